package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

func init() {
	register("enqueue", command{summary: "queue a lane or target for the daemon; --wait follows it to its result", run: runEnqueue})
}

const enqueueUsage = `enqueue LANE|TARGET [--source DIR] [--host-path] [--job-id UUID] [--wait] [--timeout D] [nats flags]

Queues one run of the lane (by CI title) or target (by id) on the daemon's
JetStream work queue. The source tree is packed (in a git work tree the
files git knows, tracked or untracked but not ignored; never .git, target,
…), stored in the object store jerichoci-sources under its SHA-256 and
named in the job spec; --host-path sends the directory's path instead (single-host
setups). Prints the job id. With --wait it follows the run's events live and
exits with its status: 0 passed (or skipped), 1 failed, 2 bad usage, NATS
errors or --timeout. Without --nats-url it connects to nats://` + defaultNATSListen + `,
where 'jerichoci serve' listens by default.`

func runEnqueue(ctx context.Context, c *cli, args []string) int {
	ncfg := defaultNATSConfig()
	ncfg.fromEnv(c.env)
	fs := c.flagSet("enqueue", enqueueUsage)
	ncfg.flags(fs, false)
	source := fs.String("source", ".", "source tree `DIR`")
	hostPath := fs.Bool("host-path", false, "send --source as a host path instead of uploading it (daemon on this host)")
	jobID := fs.String("job-id", "", "job `UUID` (default: a new one); publishing the same id again gives the same run")
	wait := fs.Bool("wait", false, "follow the run's events and exit with its status")
	output := fs.String("output", "text", "with --wait, `FORMAT` of standard output: text (status lines) or jsonl (the lifecycle events, ending with the final run_finished)")
	timeout := fs.Duration("timeout", 0, "with --wait, give up waiting after `D` (0: no limit)")
	catalog := fs.String("catalog", "", "catalog `FILE` used to tell lanes from targets (default $"+envCatalog+" or ./jerichoci.lanes.json)")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "expected exactly one LANE or TARGET, got %d arguments", len(pos))
	}
	if *output != "text" && *output != "jsonl" {
		return c.usageErr(fs, "--output: expected text or jsonl, got %q", *output)
	}
	if err := ncfg.Validate(false); err != nil {
		return c.fail(exitUsage, "invalid configuration:\n%v", err)
	}
	if err := ncfg.useStateCredentials(); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	id := uuid.New()
	if *jobID != "" {
		u, err := uuid.Parse(*jobID)
		if err != nil || len(*jobID) != 36 {
			return c.usageErr(fs, "--job-id %q: expected a UUID such as %s", *jobID, uuid.New())
		}
		id = u
	}
	name := pos[0]
	spec := map[string]any{"schema_version": model.JobSpecVersion, "job_id": id.String(), "requester": requester()}
	// The daemon's catalog decides; ours only tells a lane title from a target id.
	if cat, err := c.loadCatalog(*catalog); err == nil {
		if _, err := cat.Lookup(name); err != nil {
			if _, lerr := cat.LookupLane(name); lerr == nil {
				spec["lane"] = name
			} else {
				fmt.Fprintf(c.stderr, "jerichoci enqueue: note: %v in the local catalog; the daemon's catalog decides\n", err)
			}
		}
	}
	if _, ok := spec["lane"]; !ok {
		spec["target"] = name
	}
	src, err := filepath.Abs(*source)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(src); err == nil && !fi.IsDir() {
			err = fmt.Errorf("%s is not a directory", src)
		}
	}
	if err != nil {
		return c.fail(exitUsage, "--source %q: %v", *source, err)
	}
	if git := run.ReadGit(ctx, src); git.OK {
		if git.Head != nil && regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`).MatchString(*git.Head) {
			spec["git_head"] = *git.Head
		}
		spec["changed_files"] = append([]string{}, git.Changed...)
	}

	nc, _, err := ncfg.connect(ncfg.clientURL(), "jerichoci enqueue", zap.NewNop())
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return c.fail(exitUsage, "jetstream: %v", err)
	}
	opCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if *hostPath {
		spec["source"] = map[string]string{"kind": string(model.SourceHostPath), "path": src}
	} else {
		ref, err := uploadSource(opCtx, js, src)
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		spec["source"] = ref
	}
	data, err := encodeJSONLine(spec)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if _, err := model.ParseJobSpec(data); err != nil {
		return c.fail(exitUsage, "%v", err)
	}

	var w *runWatch
	if *wait {
		// Subscribe before publishing, so no event is missed.
		if w, err = watchRun(opCtx, nc, js, id.String(), c.stdout, *output == "jsonl"); err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		defer w.stop()
	}
	msg := &nats.Msg{Subject: protocol.JobSubject(name), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id.String())
	ack, err := js.PublishMsg(opCtx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = fmt.Errorf("%w (no stream takes %s: is jerichoci serve running?)", err, msg.Subject)
		}
		return c.fail(exitUsage, "publish job: %v", err)
	}
	if ack.Duplicate {
		fmt.Fprintf(c.stderr, "jerichoci enqueue: job %s was already queued (duplicate within the dedup window)\n", id)
	}
	if !*wait {
		fmt.Fprintln(c.stdout, id)
		return exitOK
	}
	if w.jsonl {
		fmt.Fprintf(c.stderr, "jerichoci enqueue: job %s queued (stream sequence %d)\n", id, ack.Sequence)
	} else {
		w.printf("job %s queued (stream sequence %d)\n", id, ack.Sequence)
	}
	waitCtx := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	rec, err := w.result(waitCtx)
	if err != nil {
		return c.fail(exitUsage, "waiting for job %s: %v (the job goes on; 'jerichoci cancel %s' stops it)", id, err, id)
	}
	w.final(rec)
	if rec.Status == model.StatusFailed {
		return exitFailed
	}
	return exitOK
}

func requester() string {
	host, _ := os.Hostname()
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "jerichoci enqueue (" + name + "@" + host + ")"
}

func encodeJSONLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode job spec: %w", err)
	}
	return b, nil
}

// uploadSource packs dir, names it by its SHA-256 and stores it unless the
// object store has it already.
func uploadSource(ctx context.Context, js jetstream.JetStream, dir string) (map[string]string, error) {
	obj, err := js.ObjectStore(ctx, protocol.BucketSources)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w (start jerichoci serve once to create it)", protocol.BucketSources, err)
	}
	f, err := os.CreateTemp("", "jerichoci-source-*.tar.gz")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if err := run.PackSource(ctx, dir, io.MultiWriter(f, h), gitFiles(ctx, dir)); err != nil {
		return nil, err
	}
	digest := hex.EncodeToString(h.Sum(nil))
	name := protocol.SourceObjectName(digest)
	if info, err := obj.GetInfo(ctx, name); err == nil && !info.Deleted {
		return map[string]string{"kind": string(model.SourceObjectStore), "bucket": protocol.BucketSources, "object": name, "sha256": digest}, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: name, Description: "source snapshot of " + dir}, f); err != nil {
		return nil, fmt.Errorf("upload source to %s: %w", protocol.BucketSources, err)
	}
	return map[string]string{"kind": string(model.SourceObjectStore), "bucket": protocol.BucketSources, "object": name, "sha256": digest}, nil
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

// runWatch follows one job: its lifecycle events as they come and its
// final record in the results bucket. Both arrive on one goroutine (result),
// so the events published before the record are shown before it.
type runWatch struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	events  chan *nats.Msg
	watcher jetstream.KeyWatcher
	mu      sync.Mutex
	out     io.Writer
	jsonl   bool // print the events themselves
}

// final prints the job's result: a summary, or its run_finished event.
func (w *runWatch) final(rec model.RunRecord) {
	if !w.jsonl {
		w.printf("%s\n", summary(rec))
		return
	}
	if b, err := model.EncodeCompact(model.RunFinishedEvent(rec)); err == nil {
		w.printf("%s", b)
	}
}

func (w *runWatch) printf(format string, a ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, format, a...)
}

func watchRun(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, jobID string, out io.Writer, jsonl bool) (*runWatch, error) {
	w := &runWatch{nc: nc, out: out, jsonl: jsonl, events: make(chan *nats.Msg, 4096)}
	var err error
	w.sub, err = nc.ChanSubscribe(protocol.SubjectRunsPrefix+jobID+".*.events", w.events)
	if err != nil {
		return nil, fmt.Errorf("subscribe to the job's events: %w", err)
	}
	if err := nc.Flush(); err != nil {
		w.sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to the job's events: %w", err)
	}
	kv, err := js.KeyValue(ctx, protocol.BucketResults)
	if err != nil {
		w.sub.Unsubscribe()
		return nil, fmt.Errorf("key-value bucket %s: %w (start jerichoci serve once to create it)", protocol.BucketResults, err)
	}
	if w.watcher, err = kv.Watch(context.WithoutCancel(ctx), jobID); err != nil {
		w.sub.Unsubscribe()
		return nil, fmt.Errorf("watch %s.%s: %w", protocol.BucketResults, jobID, err)
	}
	return w, nil
}

// show prints one event as a status line.
func (w *runWatch) show(m *nats.Msg) {
	var ev model.LifecycleEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return
	}
	if w.jsonl {
		// The final run_finished is printed from the results bucket.
		if ev.Event != model.EventRunFinished || m.Header.Get(protocol.HeaderFinal) != "true" {
			w.printf("%s\n", m.Data)
		}
		return
	}
	switch ev.Event {
	case model.EventRunStarted:
		w.printf("run %s: %s started\n", ev.RunID, deref(ev.TargetID))
	case model.EventJobStarted:
		w.printf("  %-8s %s\n", "running", ev.Job.ID)
	case model.EventJobFinished:
		took := time.Duration(0)
		if ev.Job.FinishedAt != nil {
			took = ev.Job.FinishedAt.Sub(ev.Job.StartedAt.Time)
		}
		w.printf("  %-8s %s (%s) %s\n", ev.Job.Status, ev.Job.ID, roundDuration(took), deref(ev.Job.Message))
	case model.EventRunFinished:
		if m.Header.Get(protocol.HeaderFinal) != "true" {
			w.printf("run %s: %s, not the job's result: %s\n", ev.Run.RunID, ev.Run.Status, deref(ev.Run.Message))
		}
	}
}

// result waits for the job's final record.
func (w *runWatch) result(ctx context.Context) (model.RunRecord, error) {
	for {
		select {
		case <-ctx.Done():
			return model.RunRecord{}, ctx.Err()
		case m := <-w.events:
			w.show(m)
		case e, ok := <-w.watcher.Updates():
			if !ok {
				return model.RunRecord{}, errors.New("the results watch ended")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // nil marks the end of the initial values
			}
			var rec model.RunRecord
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return rec, fmt.Errorf("result of the job: %w", err)
			}
			// Events published before the record reached the server first;
			// a round trip makes sure they are in our channel, then show them.
			_ = w.nc.Flush()
			for {
				select {
				case m := <-w.events:
					w.show(m)
					continue
				default:
				}
				return rec, nil
			}
		}
	}
}

func (w *runWatch) stop() {
	if w.watcher != nil {
		_ = w.watcher.Stop()
	}
	if w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
}
