package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/writers"
	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
	"jerichoci/sourcetar"
	"jerichoci/targets"
)

const enqueueUsage = `enqueue LANE|TARGET [--source DIR] [--host-path] [--job-id UUID] [--wait] [--timeout D] [nats flags]
       enqueue LANE… | --changed [PATH…] [--group ID] [--source DIR] [--host-path] [nats flags]

Queues one run of the lane (by CI title) or target (by id) on the daemon's
JetStream work queue. The source tree is packed (in a git work tree the
files git knows, tracked or untracked but not ignored; never .git, target,
…), stored in the object store jerichoci-sources under its SHA-256 and
named in the job spec; --host-path sends the directory's path instead (single-host
setups). The daemon runs the lane or target from its catalog with the
source's own jerichoci.lanes.json merged over it; a name that neither the
source's catalog (merged over the built-in one) nor the daemon knows is
refused before anything is queued, with a suggestion (exit 2). Prints the job id. With --wait it follows the run's events live and
exits with its status: 0 passed (or skipped), 1 failed, 2 bad usage, NATS
errors, no daemon or --timeout, 130 on Ctrl-C (the job goes on). Several
lanes, or --changed (the branch lanes that the changed paths select, as
'lanes select' does), make a push: one job per lane sharing a job spec
group, shown together on the status page; it prints "push #N GROUP" (N:
the work stream's sequence of its first job) and each job id with its lane.
Without --nats-url it takes the URL and credentials of the daemon found as
README says (--state-root, $PIKACI_STATE_ROOT, the daemon file a running
serve publishes, ./.pikaci), else nats://` + defaultNATSListen + `.`

func runEnqueue(ctx context.Context, c *cli, args []string) int {
	fs, ncfg := c.clientFlagSet("enqueue", enqueueUsage)
	source := fs.String("source", ".", "source tree `DIR`")
	hostPath := fs.Bool("host-path", false, "send --source as a host path instead of uploading it (daemon on this host)")
	jobID := fs.String("job-id", "", "job `UUID` (default: a new one); publishing the same id again gives the same run")
	wait := fs.Bool("wait", false, "follow the run's events and exit with its status")
	output := fs.String("output", "text", "with --wait, `FORMAT` of standard output: text (status lines) or jsonl (the lifecycle events, ending with the final run_finished)")
	timeout := fs.Duration("timeout", 0, "with --wait, give up waiting after `D` (0: no limit)")
	catalog := fs.String("catalog", "", "catalog `FILE` used to tell lanes from targets (default $"+envCatalog+" or the source's "+targets.DefaultFile+")")
	changed := fs.Bool("changed", false, "queue a push of the branch lanes that the changed paths given as arguments select (none: git's changed files of --source)")
	group := fs.String("group", "", "the push's group `ID` (default: a new one); several lanes at once make a push")
	if pos, code, done := c.parseArgs(fs, args); done {
		return code
	} else if *changed || *group != "" || len(pos) > 1 {
		return c.enqueuePush(ctx, fs, ncfg, pushRequest{names: pos, source: *source, hostPath: *hostPath, catalog: *catalog,
			changed: *changed, group: *group, wait: *wait, jobID: *jobID})
	}
	name, code, done := c.parseLaneArgs(fs, args, output)
	if done {
		return code
	}
	if err := ncfg.clientReady(); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	spec := model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: uuid.New(), Target: name, Requester: requester()}
	var err error
	if *jobID != "" {
		if spec.JobID, err = uuid.Parse(*jobID); err != nil || len(*jobID) != 36 {
			return c.usageErr(fs, "--job-id %q: expected a UUID such as %s", *jobID, uuid.New())
		}
	}
	id := spec.JobID.String()
	src, err := sourceDir(*source)
	if err != nil {
		return c.clientFail(ctx, "nothing was queued", "%v", err)
	}
	if git := run.ReadGit(ctx, src); git.OK {
		if git.Head != nil && regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`).MatchString(*git.Head) {
			spec.GitHead = *git.Head
		}
		spec.ChangedFiles = append([]string{}, git.Changed...) // empty, not nil: git saw no change
	}

	client, closeConn, err := ncfg.dialClient("jerichoci enqueue")
	if err != nil {
		return c.clientFail(ctx, "nothing was queued", "%v", err)
	}
	defer closeConn()
	// A lane or target neither the source's catalog nor the daemon's knows is refused before queuing.
	localCat, err := c.sourceCatalog(*catalog, src)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if lane, err := enqueueName(ctx, localCat, client, name); err != nil {
		return c.fail(exitUsage, "%v", err)
	} else if lane {
		spec.Lane, spec.Target = spec.Target, ""
	}
	opCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	spec.Source = model.SourceRef{Kind: model.SourceHostPath, Path: src}
	if !*hostPath {
		if spec.Source, err = uploadSource(opCtx, client, src); err != nil {
			return c.clientFail(ctx, "nothing was queued", "%v", err)
		}
	}
	var w *protocol.Watch
	out := writers.NewLocked(c.stdout) // events and live output come from two goroutines
	if *wait {
		// Subscribe before publishing, so no event is missed.
		if w, err = client.Watch(opCtx, id); err != nil {
			return c.clientFail(ctx, "nothing was queued", "%v", err)
		}
		defer w.Stop()
		if *output == "text" {
			// The job's output, live, as `jerichoci run` shows it.
			lines := &logLines{out: out}
			stop, err := client.FollowLogs(opCtx, id, false, lines.chunk)
			if err != nil {
				return c.clientFail(ctx, "nothing was queued", "%v", err)
			}
			defer func() { stop(); lines.flush() }()
		}
	}
	ack, err := enqueueAcked(opCtx, client, spec)
	if err != nil {
		return c.clientFail(ctx, "job "+id+" may have been queued", "%v", err)
	}
	if ack.Duplicate {
		fmt.Fprintf(c.stderr, "jerichoci enqueue: job %s was already queued (duplicate within the dedup window)\n", id)
	}
	if !*wait {
		fmt.Fprintln(c.stdout, id)
		return exitOK
	}
	view := jobView{out: out, jsonl: *output == "jsonl", notes: c.stderr, name: "enqueue"}
	view.note("job %s queued (stream sequence %d)\n", id, ack.Sequence)
	rec, err := view.await(ctx, w, *timeout)
	if err != nil {
		return c.clientFail(ctx, "job "+id+" goes on; 'jerichoci cancel "+id+"' stops it", "waiting for job %s: %v (the job goes on; 'jerichoci cancel %s' stops it)", id, err, id)
	}
	if rec.Status == model.StatusFailed {
		return exitFailed
	}
	return exitOK
}

func requester() string {
	host, _ := os.Hostname()
	if u, err := user.Current(); err == nil {
		return "jerichoci enqueue (" + u.Username + "@" + host + ")"
	}
	return "jerichoci enqueue (unknown@" + host + ")"
}

// uploadSource packs dir and uploads it under its SHA-256, unless the
// object store has it already.
func uploadSource(ctx context.Context, client *protocol.Client, dir string) (model.SourceRef, error) {
	f, err := os.CreateTemp("", "jerichoci-source-*.tar.gz")
	if err != nil {
		return model.SourceRef{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if err := sourcetar.Pack(ctx, dir, io.MultiWriter(f, h), gitFiles(ctx, dir)); err != nil {
		return model.SourceRef{}, err
	}
	return uploadAcked(ctx, client, f, hex.EncodeToString(h.Sum(nil)), "source snapshot of "+dir)
}

// gitFiles returns the files git knows in dir (tracked, and untracked but
// not ignored), relative to dir; nil without git, so everything is packed.
func gitFiles(ctx context.Context, dir string) map[string]bool {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return nil
	}
	files := map[string]bool{}
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files[f] = true
		}
	}
	return files
}

// logLines prints live log chunks as "    <job> | <line>", whole lines only,
// noting a gap in the chunk numbers (chunks the stream's cap dropped).
type logLines struct {
	mu   sync.Mutex
	out  io.Writer
	jobs map[logKey]*chunkLines
}

// logKey is one job of one run.
type logKey struct{ runID, job string }

// chunkLines is one job's output so far: the last chunk number and the
// unterminated line.
type chunkLines struct {
	seq   uint64
	lines *writers.Lines
}

func (l *logLines) chunk(ch protocol.LogChunk) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.jobs == nil {
		l.jobs = map[logKey]*chunkLines{}
	}
	key := logKey{ch.RunID, ch.Job}
	j := l.jobs[key]
	if j == nil {
		j = &chunkLines{lines: newLinePrefixer(l.out, ch.Job)}
		l.jobs[key] = j
	}
	if last := j.seq; ch.Seq > last+1 && last > 0 {
		fmt.Fprintf(l.out, "%s[jerichoci] %d chunks of output are not in the logs stream any more (its size cap)\n", j.lines.Prefix(), ch.Seq-last-1)
	}
	j.seq = ch.Seq
	_, _ = j.lines.Write(ch.Data)
}

// flush prints the last unterminated lines.
func (l *logLines) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, j := range l.jobs {
		_ = j.lines.Flush()
	}
	l.jobs = nil
}
