package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"jerichoci/model"
)

// newRuns returns the records of the runs under root that are not in old.
func newRuns(t *testing.T, root string, old ...string) []model.RunRecord {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "runs"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []model.RunRecord
	for _, e := range entries {
		if slices.Contains(old, e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, "runs", e.Name(), "run.json"))
		if err != nil {
			t.Fatal(err)
		}
		var r model.RunRecord
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

var fixtureRuns = []string{stagedRun, failedRun, skippedRun, noRecordRun}

// TestRerunSkippedRun: a skipped run is recorded as skipped again, with
// rerun_of, the message "rerun of <id>" and the earlier changed files and
// filters, in every output format.
func TestRerunSkippedRun(t *testing.T) {
	runID := `[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}`
	tests := []struct {
		output         string
		stdout, stderr string // regexps
	}{
		{"human", `^` + runID + ` pre-merge-pikachat-rust skipped\n$`, `^rerun of ` + skippedRun + `\n$`},
		{"text", `^run ` + runID + `: pre-merge-pikachat-rust \(0 jobs\)\nSKIPPED no jobs, ran 0s\nrerun of ` + skippedRun + `\nrun record: .*/run\.json\n$`, `^$`},
		{"jsonl", `^\{"event":"run_started","run_id":"` + runID + `",.*"rerun_of":"` + skippedRun + `".*\}\n\{"event":"run_finished","run":\{.*"status":"skipped".*\}\}\n$`, `^$`},
		{"json", `(?s)^\{\n  "run_id": "` + runID + `",\n  "status": "skipped",\n  "rerun_of": "` + skippedRun + `",.*\}\n$`, `^$`},
	}
	for _, tc := range tests {
		t.Run(tc.output, func(t *testing.T) {
			root := fixtureState(t)
			out, errs, code := runCLI(t, "--state-root", root, "rerun", skippedRun, "--output", tc.output)
			if code != exitOK || !regexp.MustCompile(tc.stdout).MatchString(out) || !regexp.MustCompile(tc.stderr).MatchString(errs) {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			recs := newRuns(t, root, fixtureRuns...)
			if len(recs) != 1 {
				t.Fatalf("%d new runs", len(recs))
			}
			r := recs[0]
			prev := loadFixtureRun(t, root, skippedRun)
			if r.Status != model.StatusSkipped || model.Value(r.RerunOf) != skippedRun || model.Value(r.Message) != "rerun of "+skippedRun ||
				model.Value(r.TargetID) != "pre-merge-pikachat-rust" || model.Value(r.TargetDescription) != model.Value(prev.TargetDescription) ||
				!reflect.DeepEqual(r.Filters, prev.Filters) || !reflect.DeepEqual(r.ChangedFiles, prev.ChangedFiles) ||
				len(r.Jobs) != 0 || r.FinishedAt == nil || !r.FinishedAt.Equal(r.CreatedAt.Time) || r.SnapshotDir != "" {
				t.Errorf("rerun record = %+v", r)
			}
			if tc.output == "json" {
				b, _ := os.ReadFile(filepath.Join(root, "runs", r.RunID, "run.json"))
				if out != string(b) {
					t.Errorf("--output json is not run.json:\n%s\n%s", out, b)
				}
			}
		})
	}
}

func loadFixtureRun(t *testing.T, root, id string) model.RunRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "runs", id, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r model.RunRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// brokenIncusEnv points the Incus socket at a path that does not exist, so
// no instance is ever touched: every Incus job fails with the reason.
func brokenIncusEnv(t *testing.T) map[string]string {
	return map[string]string{
		"INCUS_SOCKET":        filepath.Join(t.TempDir(), "no-incusd", "unix.socket"),
		"JERICHOCI_CATALOG":   "../../jerichoci.lanes.json",
		"JERICHOCI_LOG_LEVEL": "error",
	}
}

// TestRerunRunsTheEarlierSnapshot: the rerun of a failed demo-pass run is
// recorded with rerun_of and "rerun of <id>", the earlier run's source
// root, git head, changed files and filters, and a snapshot that is a copy
// of the earlier run's (not of the source tree as it is now). Incus is
// unreachable, so the job fails (exit 1 or 2: whether the run's
// infrastructure watch sees a failing prepare node is the runner's
// business, not rerun's).
func TestRerunRunsTheEarlierSnapshot(t *testing.T) {
	state, src := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# the source now\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const prevID = "20260321T080000Z-1234abcd"
	snap := filepath.Join(state, "runs", prevID, "snapshot")
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snap, "README.md"), []byte("# the source then\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	head, target, desc, dirty := "4eef499fd13da5aec04714b080cc05fdcf655bbc", "demo-pass", "recorded description", true
	created, _ := model.ParseTimestamp("2026-03-21T08:00:00.5+00:00")
	prev := model.RunRecord{RunID: prevID, Status: model.StatusFailed, TargetID: &target, TargetDescription: &desc,
		SourceRoot: src, SnapshotDir: snap, GitHead: &head, GitDirty: &dirty, CreatedAt: model.At(created),
		ChangedFiles: []string{"README.md"}, Filters: []string{"docs/**"}, Jobs: []model.JobRecord{}}
	b, _ := model.EncodeFile(prev)
	if err := os.WriteFile(filepath.Join(state, "runs", prevID, "run.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	out, errs, code := runCLIEnv(t, brokenIncusEnv(t), "--state-root", state, "rerun", prevID, "--output", "json")
	if code != exitFailed && code != exitUsage {
		t.Fatalf("exit %d, want %d or %d\nstdout:\n%s\nstderr:\n%s", code, exitFailed, exitUsage, out, errs)
	}
	var r model.RunRecord
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not a run record: %v\n%s", err, out)
	}
	if model.Value(r.RerunOf) != prevID || model.Value(r.Message) != "rerun of "+prevID || r.Status != model.StatusFailed ||
		model.Value(r.TargetID) != target || model.Value(r.TargetDescription) != desc || r.SourceRoot != src ||
		model.Value(r.GitHead) != head || r.GitDirty == nil || !*r.GitDirty ||
		!reflect.DeepEqual(r.ChangedFiles, prev.ChangedFiles) || !reflect.DeepEqual(r.Filters, prev.Filters) {
		t.Errorf("rerun record:\n%s", out)
	}
	if len(r.Jobs) != 1 || r.Jobs[0].ID != "hello" || r.Jobs[0].Status != model.StatusFailed || !strings.Contains(model.Value(r.Jobs[0].Message), "unix.socket") {
		t.Errorf("jobs = %+v", r.Jobs)
	}
	if got, _ := os.ReadFile(filepath.Join(r.SnapshotDir, "README.md")); string(got) != "# the source then\n" || r.SnapshotDir == snap {
		t.Errorf("snapshot %s holds %q, want a copy of the earlier run's", r.SnapshotDir, got)
	}
	// Its metadata names the run's source root, not the snapshot copied.
	var md model.SnapshotMetadata
	if b, err := os.ReadFile(filepath.Join(r.SnapshotDir, model.SnapshotMetadataFile)); err != nil || json.Unmarshal(b, &md) != nil || md.SourceRoot != src {
		t.Errorf("snapshot metadata source root = %q (%v), want %s", md.SourceRoot, err, src)
	}
	if onDisk, _ := os.ReadFile(filepath.Join(state, "runs", r.RunID, "run.json")); string(onDisk) != out {
		t.Error("--output json differs from run.json")
	}
}

// TestRunHumanOutput: pikaci's human format, a line per job on stdout and
// the job's message on stderr, with run's exit status (Incus is
// unreachable: 1 or 2, see TestRerunRunsTheEarlierSnapshot).
func TestRunHumanOutput(t *testing.T) {
	state, src := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "README.md"), []byte("# src\n"), 0o644)
	out, errs, code := runCLIEnv(t, brokenIncusEnv(t), "--state-root", state, "run", "demo-pass", "--source", src, "--output", "human")
	if (code != exitFailed && code != exitUsage) || !regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8} hello failed\n$`).MatchString(out) ||
		!strings.Contains(errs, "unix.socket") || strings.Count(errs, "\n") != 1 {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

func TestRerunErrors(t *testing.T) {
	checkCLIErrors(t, []cliErrorCase{
		{name: "rerun without a target id",
			setup: func(t *testing.T, root string) {
				rewriteRun(t, root, failedRun, func(r *model.RunRecord) { r.TargetID = nil })
			},
			args: []string{"rerun", failedRun}, code: exitUsage,
			want: "jerichoci: run `" + failedRun + "` cannot be rerun because it does not record a target id\n"},
		{name: "rerun of an unknown run", args: []string{"rerun", "nope"}, code: exitUsage, want: `no run "nope" under $STATE/runs`},
		{name: "rerun without a snapshot",
			setup: func(t *testing.T, root string) {
				rewriteRun(t, root, failedRun, func(r *model.RunRecord) { r.SnapshotDir = "" })
			},
			args: []string{"rerun", failedRun}, code: exitUsage,
			want: "jerichoci: run `" + failedRun + "` has no snapshot to rerun\n"},
		{name: "rerun of a snapshot gone", args: []string{"rerun", failedRun}, code: exitUsage,
			want: "jerichoci: snapshot for run `" + failedRun + "` no longer exists at " + otherHost + "/runs/" + failedRun + "/snapshot\n"},
		{name: "rerun of a source root gone",
			setup: func(t *testing.T, root string) {
				os.MkdirAll(filepath.Join(root, "runs", failedRun, "snapshot"), 0o755)
			},
			args: []string{"rerun", failedRun}, code: exitUsage,
			want: "jerichoci: run `" + failedRun + "` cannot be rerun: its source root /var/lib/other-host/src/pika no longer exists\n"},
		{name: "rerun output", args: []string{"rerun", failedRun, "--output", "xml"}, code: exitUsage,
			want: `--output: expected text, jsonl, human or json, got "xml"`},
		{name: "run output", args: []string{"run", "demo-pass", "--output", "yaml"}, code: exitUsage,
			want: `--output: expected text, jsonl, human or json, got "yaml"`},
		{name: "rerun without run", args: []string{"rerun"}, code: exitUsage, want: "expected one RUN_ID, got 0 arguments"},
	})
}

func TestRunAndRerunHelp(t *testing.T) {
	top, _, _ := runCLI(t, "--help")
	for _, name := range []string{"rerun", "run"} {
		if !strings.Contains(top, "\n  "+name+" ") {
			t.Errorf("jerichoci --help lacks %s:\n%s", name, top)
		}
		out, errs, code := runCLI(t, name, "--help")
		if code != exitOK || !strings.HasPrefix(out, "usage: jerichoci "+name+" ") || !strings.Contains(out, "human") || errs != "" {
			t.Errorf("%s --help: exit %d\n%s%s", name, code, out, errs)
		}
	}
}
