package web

import (
	"fmt"
	"regexp"
	"strings"

	"jerichoci/model"
	"jerichoci/run"
)

// Why says in a word and a line why a run or a job did not pass
// (docs/PROTOCOL.md, "Status page and JSON API"): the word is one of
// whyWords, the line the detail (the exit code, the timeout, the policy,
// the retries, the record's message).
type Why struct {
	Word string `json:"word"`
	Line string `json:"line"`
}

// The words of Why.
const (
	whyTest     = "test failed"
	whyTimeout  = "timed out"
	whyCancel   = "cancelled"
	whyRefused  = "refused"
	whyInfra    = "infrastructure"
	whyNeverRan = "never ran"
	whyBuild    = "build failed"   // a staged output's nix build failed
	whyPrepare  = "prepare failed" // another prepare node failed (the runner's, say)
	// whyNotQueued: a push's lane whose job the daemon does not know.
	whyNotQueued = "not queued"
	whyFailed    = "failed" // a failure the record does not classify further
)

// whyRun is why a failed run failed; nil unless it failed. retries is how
// often the daemon handed the job back before this attempt.
func whyRun(r model.RunRecord, retries int) *Why {
	if r.Status != model.StatusFailed {
		return nil
	}
	msg := model.Value(r.Message)
	if w := whyMessage(msg, retries); w != nil {
		return w
	}
	for _, j := range r.Jobs {
		if j.Status == model.StatusFailed {
			w := whyJob(j)
			if w.Word == whyInfra && retries > 0 {
				w.Line = retried(retries) + w.Line
			}
			return w
		}
	}
	if msg == "" {
		msg = "the run failed before any job did (no message in its record)"
	}
	return &Why{Word: whyFailed, Line: msg}
}

// whyJob is why a failed job failed; nil unless it failed.
func whyJob(j model.JobRecord) *Why {
	if j.Status != model.StatusFailed {
		return nil
	}
	msg := model.Value(j.Message)
	if w := whyMessage(msg, 0); w != nil {
		return w
	}
	if j.ExitCode != nil && *j.ExitCode != 0 {
		line := fmt.Sprintf("exit %d in %s", *j.ExitCode, j.ID)
		if msg != "" {
			line += ": " + msg
		}
		return &Why{Word: whyTest, Line: line}
	}
	if msg == "" {
		msg = "job " + j.ID + " failed (no exit code or message in its record)"
	}
	return &Why{Word: whyFailed, Line: msg}
}

// whyMessage classifies a record's message by the words the daemon and
// the executors write (run/daemon's classify, run's messages); nil when
// the message is none of them.
func whyMessage(msg string, retries int) *Why {
	low := strings.ToLower(msg)
	switch {
	case msg == "":
		return nil
	case msg == run.MsgCancelled || strings.HasPrefix(low, "cancelled"):
		return &Why{Word: whyCancel, Line: "cancelled before it finished"}
	case strings.HasPrefix(low, "timed out"):
		return &Why{Word: whyTimeout, Line: msg}
	case strings.HasPrefix(low, "unknown job") || strings.HasPrefix(low, "unknown lane") || strings.HasPrefix(low, "invalid job spec"):
		return &Why{Word: whyNeverRan, Line: msg}
	case msg == run.MsgHostJobsRefused:
		return &Why{Word: whyRefused, Line: "policy: host jobs (the daemon runs without --allow-host-jobs)"}
	case msg == run.MsgStagedBuildsRefused:
		return &Why{Word: whyRefused, Line: "policy: staged builds (the daemon runs without --allow-staged-builds)"}
	case strings.HasPrefix(low, "source refused"):
		return &Why{Word: whyRefused, Line: "policy: source limits: " + msg}
	case strings.Contains(low, "refused"):
		return &Why{Word: whyRefused, Line: msg}
	case strings.HasPrefix(msg, "prepare node `") || strings.HasPrefix(msg, "not run because prepare phase stopped after `"):
		return whyPrepareNode(msg)
	case strings.Contains(low, "infrastructure error") || strings.HasPrefix(low, "gave up") ||
		strings.HasPrefix(low, "interrupted") || strings.HasPrefix(low, "could not store the result"):
		return &Why{Word: whyInfra, Line: retried(retries) + msg}
	}
	return nil
}

func retried(n int) string {
	return fmt.Sprintf("retried: %d · ", n)
}

// The messages of a failed prepare node (docs/CONTRACTS.md, "Exact
// messages"): the node, then the cause, which for a staged build names the
// output and the exit as the original wrote it (`Some(1)`, `None`) and
// the host.log to read.
var (
	prepareNodeMsg = regexp.MustCompile("^(?:prepare node `([^`]+)` failed before execute|not run because prepare phase stopped after `([^`]+)` failed): (.*)$")
	stagedBuildMsg = regexp.MustCompile("^staged prepare `([^`]+)` failed with (?:Some\\((-?[0-9]+)\\)|None)(?:; see .*)?$")
)

// whyPrepareNode says why a prepare node failed: "build failed" with the
// output and the exit for a staged build, "prepare failed" with the
// node and its cause otherwise. The line reads naturally; the record keeps
// the original's wording, and the log its path.
func whyPrepareNode(msg string) *Why {
	m := prepareNodeMsg.FindStringSubmatch(msg)
	if m == nil {
		return &Why{Word: whyPrepare, Line: msg}
	}
	node, cause := m[1]+m[2], m[3]
	if b := stagedBuildMsg.FindStringSubmatch(cause); b != nil {
		exit := "was killed (no exit code)"
		if b[2] != "" {
			exit = "exited " + b[2]
		}
		return &Why{Word: whyBuild, Line: fmt.Sprintf("nix build of %s %s (prepare node %s; its log is in host.log)", b[1], exit, node)}
	}
	return &Why{Word: whyPrepare, Line: "prepare node " + node + ": " + cause}
}
