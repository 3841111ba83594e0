package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/internal/testlock"
	"jerichoci/model"
	"jerichoci/run"
	rundaemon "jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

const project = "pika-managed-agents"

var (
	root       string // the repository
	jciBin     string // freshly built jerichoci
	natsBin    string // bin/nats-server
	setupError error  // why the binaries are missing
)

func TestMain(m *testing.M) {
	// Every test here runs jerichoci and a nats-server process: the fast
	// run (-short) leaves them all out, so it builds nothing and takes no
	// lock.
	if testenv.Short() {
		os.Exit(m.Run())
	}
	// Shared with the other packages that use incusd; test/incusfault,
	// which kills incusd, takes it exclusively.
	lock := testlock.MustShared()
	code := testMain(m)
	lock.Release()
	os.Exit(code)
}

func testMain(m *testing.M) int {
	wd, _ := os.Getwd()
	root = filepath.Clean(filepath.Join(wd, "..", ".."))
	tmp, err := os.MkdirTemp("", "jerichoci-daemon-test-")
	if err != nil {
		setupError = err
		return m.Run()
	}
	defer os.RemoveAll(tmp)
	jciBin = filepath.Join(tmp, "jerichoci")
	natsBin = filepath.Join(root, "bin", "nats-server")
	if out, err := itest.GoBuild(root, jciBin, "./cmd/jerichoci"); err != nil {
		setupError = fmt.Errorf("build jerichoci: %v\n%s", err, out)
	} else if _, err := os.Stat(natsBin); err != nil {
		// Same version as go.mod's requirement, so no network beyond the module proxy.
		if out, err := itest.GoBuild(root, natsBin, "github.com/nats-io/nats-server/v2"); err != nil {
			setupError = fmt.Errorf("build bin/nats-server: %v\n%s", err, out)
		}
	}
	return m.Run()
}

// require skips (or fails in CI) when the binaries or incusd are missing,
// and returns an Incus client for checks.
func require(t *testing.T) *incus.Client {
	t.Helper()
	testenv.Needs(t, "bin/nats-server, a jerichoci build and incusd with project "+project+" and image pikaci/dev (scripts/incus-up)")
	err := setupError
	var cl *incus.Client
	if err == nil {
		var sock string
		if sock, err = incus.SocketPath(os.LookupEnv); err == nil {
			if cl, err = incus.NewUnix(sock, incus.WithProject(project)); err == nil {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				_, err = cl.GetImageAlias(ctx, "pikaci/dev")
				cancel()
			}
		}
	}
	if err != nil {
		msg := "needs bin/nats-server and incusd with project " + project + " and image pikaci/dev (scripts/incus-up): " + err.Error()
		testenv.Missing(t, "%s", msg)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

type daemon struct {
	name      string
	stateRoot string
	cmd       *exec.Cmd
	log       *itest.SyncBuffer
	done      chan struct{}
}

// testCatalog adds a long job to the demo catalog.
const testCatalog = `{"schema_version": 1, "targets": [
 {"id": "demo-pass", "description": "passes", "jobs": [{"id": "hello", "description": "echo", "timeout_secs": 60,
   "command": {"kind": "shell", "command": "echo hello; head -n 1 README.md"},
   "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]},
 {"id": "demo-slow", "description": "runs a while", "jobs": [{"id": "slow", "description": "sleep", "timeout_secs": 120,
   "command": {"kind": "shell", "command": "echo start; sleep 10; echo done"},
   "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}
]}`

func writeCatalog(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(p, []byte(testCatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// noHostPathRoot, given among startDaemon's extra arguments, starts the
// daemon without --host-path-root (so host_path sources are refused); it
// is not passed on.
const noHostPathRoot = "\x00no-host-path-root"

// wrapWith, followed by a command and its arguments separated by spaces,
// among startDaemon's extra arguments runs the daemon under that command
// (say, "ip netns exec NS env VAR=…"); it is not passed on.
const wrapWith = "\x00wrap="

// startDaemon runs `jerichoci serve` as a process and waits until it pulls.
// url "" runs the daemon on its embedded nats-server (no JERICHOCI_NATS_*
// in its environment). extra goes after the harness's own flags, so a
// repeated flag (--max-deliver 2) wins; --state-root in extra replaces the
// harness's state root. Unless extra has --host-path-root or the
// noHostPathRoot marker, host_path sources are allowed under os.TempDir(),
// where the orchestrator's source directory is.
func startDaemon(t *testing.T, url, name, catalog string, concurrency int, extra ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, url, name, catalog, concurrency, extra...)
	itest.WaitServing(t, name, d.cmd, d.log, d.done, 60*time.Second)
	return d
}

// launchDaemon is startDaemon without the wait until it pulls.
func launchDaemon(t *testing.T, url, name, catalog string, concurrency int, extra ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, log: &itest.SyncBuffer{}}
	hostPathRoot := true
	var rest, wrap []string
	for _, a := range extra {
		if a == noHostPathRoot {
			hostPathRoot = false
			continue
		}
		if w, ok := strings.CutPrefix(a, wrapWith); ok {
			wrap = strings.Fields(w)
			continue
		}
		rest = append(rest, a)
	}
	if _, ok := flagValue(rest, "--host-path-root"); ok {
		hostPathRoot = false
	}
	if sr, ok := flagValue(rest, "--state-root"); ok {
		d.stateRoot = sr
	} else {
		d.stateRoot = t.TempDir()
		// Host-local jobs of a root daemon run as the host-jobs user, who
		// must get through to the state root (serve checks).
		if err := os.Chmod(filepath.Dir(d.stateRoot), 0o711); err != nil {
			t.Fatal(err)
		}
		rest = append([]string{"--state-root", d.stateRoot}, rest...)
	}
	args := []string{"serve", "--catalog", catalog,
		"--concurrency", fmt.Sprint(concurrency), "--ack-wait", "6s", "--max-deliver", "3",
		"--retry-delay", "500ms", "--reap-interval", "3s", "--drain-timeout", "30s", "--log-level", "info",
		// No warm pool unless a test asks for one (--warm N later wins):
		// dozens of daemons keeping instances ready would load the host.
		"--warm", "0",
		// No metrics listener: many daemons run at once (a test asks for one).
		"--http-listen", ""}
	if hostPathRoot {
		args = append(args, "--host-path-root", os.TempDir())
	}
	argv := append(append(wrap, jciBin), append(args, rest...)...)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = append(itest.CleanEnv(), "JERICHOCI_OWNER="+name)
	if url != "" {
		d.cmd.Env = append(d.cmd.Env, "JERICHOCI_NATS_URL="+url)
	}
	d.done = itest.LaunchServe(t, name, d.cmd, d.log)
	return d
}

// flagValue finds --name VALUE or --name=VALUE in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// orchestrator is what any NATS client does: publish specs, read results.
type orchestrator struct {
	nc *nats.Conn
	js jetstream.JetStream
	// client, when set, queues jobs and uploads sources: on an embedded
	// server the client may not read, so nc and js are the worker's
	// (newEmbeddedOrchestrator).
	client  *protocol.Client
	pub     jetstream.JetStream // the client's
	results jetstream.KeyValue
	jobs    jetstream.KeyValue
	src     string
}

// newOrchestrator connects to url with opts (say, the user and password
// of an embedded server).
func newOrchestrator(t *testing.T, url string, opts ...nats.Option) *orchestrator {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	o := &orchestrator{nc: nc, js: js, src: t.TempDir()}
	if err := os.WriteFile(filepath.Join(o.src, "README.md"), []byte("# daemon test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if o.results, err = js.KeyValue(ctx, protocol.BucketResults); err != nil {
		t.Fatal(err)
	}
	if o.jobs, err = js.KeyValue(ctx, protocol.BucketJobs); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *orchestrator) spec(id, target string) []byte {
	b, _ := json.Marshal(map[string]any{"schema_version": 1, "job_id": id, "target": target,
		"source": map[string]string{"kind": "host_path", "path": o.src}})
	return b
}

// publish sends data as a job; msgID "" sends no Nats-Msg-Id.
func (o *orchestrator) publish(t *testing.T, subject string, data []byte, msgID string) *jetstream.PubAck {
	t.Helper()
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	js := o.js
	if o.client != nil {
		js = o.pub
	}
	// A fresh cluster can leave a publish unanswered (docs/RELIABILITY.md,
	// "A fleet that starts with its cluster"): with a message id it is sent
	// again, as enqueue does, and the stream queues it once.
	for try := 1; ; try++ {
		ack, err := js.PublishMsg(t.Context(), m)
		if err == nil {
			return ack
		}
		unanswered := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
		if msgID == "" || !unanswered || try == 8 || t.Context().Err() != nil {
			t.Fatalf("publish %s (try %d): %v", subject, try, err)
		}
		t.Logf("publish %s: %v; sending it again with the same message id", subject, err)
	}
}

func (o *orchestrator) result(t *testing.T, key string) *model.RunRecord {
	return kvGet[model.RunRecord](t, o.results, key)
}

func (o *orchestrator) claim(t *testing.T, key string) *protocol.Claim {
	return kvGet[protocol.Claim](t, o.jobs, key)
}

// kvGet reads and decodes key from kv; nil when the key is absent.
func kvGet[T any](t *testing.T, kv jetstream.KeyValue, key string) *T {
	t.Helper()
	e, err := kv.Get(t.Context(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		t.Fatalf("%s %s: %v", kv.Bucket(), key, err)
	}
	return &v
}

// waitResults waits for a final record of every key.
func (o *orchestrator) waitResults(t *testing.T, keys []string, bound time.Duration) map[string]model.RunRecord {
	t.Helper()
	got := map[string]model.RunRecord{}
	itest.WaitFor(t, fmt.Sprintf("final records of %d jobs", len(keys)), bound, func() bool {
		for _, k := range keys {
			if _, ok := got[k]; ok {
				continue
			}
			if r := o.result(t, k); r != nil {
				got[k] = *r
			}
		}
		return len(got) == len(keys)
	})
	return got
}

// streamEmpty waits until the work stream holds no message: each was
// acknowledged or terminated, none is waiting for redelivery.
func (o *orchestrator) streamEmpty(t *testing.T) {
	t.Helper()
	itest.WaitFor(t, "the work stream to empty", 60*time.Second, func() bool {
		s, err := o.js.Stream(t.Context(), protocol.StreamJobs)
		if err != nil {
			return false
		}
		info, err := s.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
}

// diskRun is one run directory of a daemon.
type diskRun struct {
	daemon string
	dir    string // runs/<id>
	job    protocol.JobFile
	rec    model.RunRecord
}

// commandCompleted reports whether a job's command ran to its end in the
// attempt's guest (its host.log has the runner's exit): an attempt whose
// instance could not be created, or whose guest was cut off mid-command,
// did not run the job.
func (r diskRun) commandCompleted(t *testing.T) bool {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(r.dir, "jobs", "*", "host.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "guest runner exited with") {
			return true
		}
	}
	return false
}

// diskRuns reads every daemon run: runs/<id>/jerichoci-job.json + run.json.
func diskRuns(t *testing.T, ds ...*daemon) map[string][]diskRun {
	t.Helper()
	out := map[string][]diskRun{}
	for _, d := range ds {
		dirs, _ := filepath.Glob(filepath.Join(d.stateRoot, "runs", "*"))
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join(dir, protocol.JobFileName))
			if err != nil {
				continue
			}
			var jf protocol.JobFile
			if err := json.Unmarshal(b, &jf); err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			rec, err := run.LoadRun(d.stateRoot, filepath.Base(dir))
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			out[jf.JobID] = append(out[jf.JobID], diskRun{daemon: d.name, dir: dir, job: jf, rec: rec})
		}
	}
	return out
}

// nonFinalPrefixes start the messages of attempts that are not a job's result.
var nonFinalPrefixes = []string{"infrastructure error on delivery", "interrupted:", "superseded:", "could not store the result"}

// checkOneFinal asserts that the job has exactly one final record: the
// result in the KV bucket, equal to its run.json on one daemon, while any
// other attempt on disk is marked as not final (or never finished).
func checkOneFinal(t *testing.T, key string, res model.RunRecord, runs []diskRun) {
	t.Helper()
	finals := 0
	for _, r := range runs {
		if r.rec.RunID == res.RunID {
			finals++
			if r.rec.Status != res.Status || model.Value(r.rec.Message) != model.Value(res.Message) {
				t.Errorf("job %s: run.json on %s (%s %q) differs from the result (%s %q)", key, r.daemon,
					r.rec.Status, model.Value(r.rec.Message), res.Status, model.Value(res.Message))
			}
			continue
		}
		if r.rec.Status == model.StatusRunning {
			continue // an attempt whose daemon died
		}
		marked := false
		for _, p := range nonFinalPrefixes {
			marked = marked || strings.HasPrefix(model.Value(r.rec.Message), p)
		}
		if !marked {
			t.Errorf("job %s: run %s on %s looks final (%s %q) but the result is run %s", key, r.rec.RunID, r.daemon,
				r.rec.Status, model.Value(r.rec.Message), res.RunID)
		}
	}
	if finals != 1 {
		t.Errorf("job %s: %d run.json files of the final run %s, want 1", key, finals, res.RunID)
	}
}

// checkPassed asserts that a demo-pass result is what the executor gives
// for it: passed, its one job "test passed".
func checkPassed(t *testing.T, key string, res model.RunRecord) {
	t.Helper()
	if res.Status != model.StatusPassed || len(res.Jobs) != 1 || model.Value(res.Jobs[0].Message) != "test passed" {
		t.Errorf("job %s: result %s %q with jobs %+v, want passed with its job's \"test passed\"", key, res.Status, model.Value(res.Message), res.Jobs)
	}
}

// instancesOf lists the daemon-owned instances of the given job keys.
func instancesOf(t *testing.T, cl *incus.Client, keys ...string) []incus.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	all, err := cl.ListInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []incus.Instance
	for _, in := range all {
		for _, k := range keys {
			if strings.HasPrefix(in.Config[executor.ConfigOwner], rundaemon.OwnerPrefix+k+"/") {
				out = append(out, in)
			}
		}
	}
	return out
}

func TestTwoDaemonsTwentyJobsOneFinalRecordEach(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	a := startDaemon(t, url, "daemon-a", cat, 2)
	b := startDaemon(t, url, "daemon-b", cat, 2)
	o := newOrchestrator(t, url)
	var keys []string
	for i := 0; i < 20; i++ {
		id := uuid.NewString()
		keys = append(keys, id)
		o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
	}
	results := o.waitResults(t, keys, 8*time.Minute)
	o.streamEmpty(t)
	runs := diskRuns(t, a, b)
	perDaemon := map[string]int{}
	for _, k := range keys {
		checkOneFinal(t, k, results[k], runs[k])
		checkPassed(t, k, results[k])
		for _, r := range runs[k] {
			perDaemon[r.daemon]++
		}
	}
	t.Logf("attempts per daemon: %v", perDaemon)
	// Instances are deleted after the results, in the background.
	checkNoInstances(t, cl, keys...)
}

// waitInstance waits for the job's instance to exist and returns it.
func waitInstance(t *testing.T, cl *incus.Client, key string) incus.Instance {
	t.Helper()
	var got incus.Instance
	itest.WaitFor(t, "the job's instance", 2*time.Minute, func() bool {
		if in := instancesOf(t, cl, key); len(in) > 0 {
			got = in[0]
			return true
		}
		return false
	})
	return got
}

func TestKill9MidJobRunsAgainElsewhereAndReapsTheInstance(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	// The recovery settings are the defaults (ack wait 10s, heartbeat 2s,
	// stale after 3 beats); the harness's shorter ack wait is overridden.
	a := startDaemon(t, url, "daemon-a", cat, 1, "--ack-wait", "10s")
	b := startDaemon(t, url, "daemon-b", cat, 1, "--ack-wait", "10s")
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-slow"), o.spec(id, "demo-slow"), id)
	first := waitInstance(t, cl, id)
	victim, survivor := a, b
	if strings.HasPrefix(o.claim(t, id).Worker, "daemon-b") {
		victim, survivor = b, a
	}
	firstRun := first.Config[executor.ConfigRunID]
	if err := victim.cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup at all
		t.Fatal(err)
	}
	killed := time.Now()
	<-victim.done
	// Reported, not asserted: how long until the job's command runs again
	// (an instance of another run of the job is up on the survivor).
	itest.WaitFor(t, "the job to run again", 3*time.Minute, func() bool {
		for _, in := range instancesOf(t, cl, id) {
			if in.Config[executor.ConfigRunID] != firstRun && in.Status == "Running" {
				return true
			}
		}
		return o.result(t, id) != nil
	})
	t.Logf("kill -9 of %s: the job runs again on %s %.1fs later (default recovery settings)", victim.name, survivor.name, time.Since(killed).Seconds())
	res := o.waitResults(t, []string{id}, 5*time.Minute)[id]
	if res.RunID == firstRun {
		t.Fatalf("the result is the killed run %s", firstRun)
	}
	// The result is stored first, then the claim marked finished
	// (run/daemon finalize): wait for the second write, bounded.
	var c *protocol.Claim
	itest.WaitFor(t, "the claim to be finished", time.Minute, func() bool {
		c = o.claim(t, id)
		return c != nil && c.State == protocol.ClaimFinished
	})
	runs := diskRuns(t, a, b)[id]
	checkOneFinal(t, id, res, runs)
	ranOnSurvivor := false
	for _, r := range runs {
		ranOnSurvivor = ranOnSurvivor || (r.daemon == survivor.name && r.rec.RunID == res.RunID)
	}
	if !ranOnSurvivor {
		t.Errorf("the final run %s did not run on %s", res.RunID, survivor.name)
	}
	itest.WaitFor(t, "the killed daemon's instance "+first.Name+" to be reaped", 2*time.Minute, func() bool {
		for _, in := range instancesOf(t, cl, id) {
			if in.Name == first.Name {
				return false
			}
		}
		return true
	})
	o.streamEmpty(t)
}

func TestPoisonMessagesAreTerminatedWithAFailedRecord(t *testing.T) {
	require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	a := startDaemon(t, url, "daemon-a", cat, 2)
	o := newOrchestrator(t, url)
	invalidID, unknownID := uuid.NewString(), uuid.NewString()
	o.publish(t, protocol.JobSubject("whatever"), []byte(`{"schema_version": 1, "job_id": `), invalidID)
	o.publish(t, protocol.JobSubject("nope"), []byte(`{"schema_version":1,"job_id":"`+unknownID+`","lane":"nope","source":{"kind":"host_path","path":"/tmp"}}`), unknownID)
	results := o.waitResults(t, []string{invalidID, unknownID}, 2*time.Minute)
	tests := []struct {
		key, message string
	}{
		{invalidID, "invalid job spec: expected a JSON object (a job spec), got invalid JSON"},
		{unknownID, "unknown job `nope`"},
	}
	o.streamEmpty(t)
	runs := diskRuns(t, a)
	for _, tc := range tests {
		res := results[tc.key]
		if res.Status != model.StatusFailed || !strings.HasPrefix(model.Value(res.Message), tc.message) {
			t.Errorf("job %s: result %s %q, want failed %q", tc.key, res.Status, model.Value(res.Message), tc.message)
		}
		if n := len(runs[tc.key]); n != 1 {
			t.Errorf("job %s: %d runs on disk, want 1 (no redelivery)", tc.key, n)
		}
		for _, r := range runs[tc.key] {
			if r.job.Delivery != 1 {
				t.Errorf("job %s: a run of delivery %d, want only the first", tc.key, r.job.Delivery)
			}
		}
	}
}

func TestSameJobIDTwiceRunsOnce(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	a := startDaemon(t, url, "daemon-a", cat, 2)
	b := startDaemon(t, url, "daemon-b", cat, 2)
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	spec := o.spec(id, "demo-pass")
	if ack := o.publish(t, protocol.JobSubject("demo-pass"), spec, id); ack.Duplicate {
		t.Fatal("the first publish was a duplicate")
	}
	if ack := o.publish(t, protocol.JobSubject("demo-pass"), spec, id); !ack.Duplicate {
		t.Error("the second publish with the same Nats-Msg-Id was not deduplicated")
	}
	// Past the dedup window (or from a publisher without the header) the
	// copies reach the stream; the claim keeps them from running.
	o.publish(t, protocol.JobSubject("demo-pass"), spec, "")
	o.publish(t, protocol.JobSubject("demo-pass"), spec, "")
	res := o.waitResults(t, []string{id}, 5*time.Minute)[id]
	o.streamEmpty(t)
	runs := diskRuns(t, a, b)[id]
	checkOneFinal(t, id, res, runs)
	checkPassed(t, id, res)
	// The promise: one final record, and never two runs of the job at the
	// same time. A copy may carry a retry of an attempt that failed on
	// infrastructure (checkOneFinal has checked that every other run is
	// marked as not the job's result), so runs may come from two messages.
	for i, x := range runs {
		for _, y := range runs[i+1:] {
			if overlap(x.rec, y.rec) {
				t.Errorf("runs %s (message %d) and %s (message %d) of one job ran at the same time",
					x.rec.RunID, x.job.StreamSeq, y.rec.RunID, y.job.StreamSeq)
			}
		}
	}
	checkNoInstances(t, cl, id)
}

// overlap reports whether two finished runs' lifetimes intersect.
func overlap(a, b model.RunRecord) bool {
	if a.FinishedAt == nil || b.FinishedAt == nil {
		return false // an attempt whose daemon died has no end to compare
	}
	return a.CreatedAt.Before(b.FinishedAt.Time) && b.CreatedAt.Before(a.FinishedAt.Time)
}

func TestCancelRunningJob(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	startDaemon(t, url, "daemon-a", cat, 1)
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-slow"), o.spec(id, "demo-slow"), id)
	inst := waitInstance(t, cl, id)
	cmd := exec.Command(jciBin, "cancel", id, "--wait", "--timeout", "2m")
	cmd.Env = append(os.Environ(), "JERICHOCI_NATS_URL="+url)
	out, err := cmd.CombinedOutput()
	res := o.result(t, id)
	if res == nil {
		t.Fatalf("no result after cancel --wait (%v):\n%s", err, out)
	}
	if res.Status != model.StatusFailed || model.Value(res.Message) != run.MsgCancelled {
		// The job may end by itself just before the cancel lands.
		t.Fatalf("result %s %q, want failed %q; cancel said:\n%s", res.Status, model.Value(res.Message), run.MsgCancelled, out)
	}
	if err != nil {
		t.Errorf("jerichoci cancel --wait: %v\n%s", err, out)
	}
	// The executor deletes it; if Incus refused (a create still running),
	// the reaper does.
	itest.WaitFor(t, "instance "+inst.Name+" to be deleted", time.Minute, func() bool {
		for _, in := range instancesOf(t, cl, id) {
			if in.Name == inst.Name {
				return false
			}
		}
		return true
	})
}

func TestEnqueueWaitExitsWithTheRunStatus(t *testing.T) {
	require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	startDaemon(t, url, "daemon-a", cat, 1)
	o := newOrchestrator(t, url)
	cmd := exec.Command(jciBin, "enqueue", "demo-pass", "--source", o.src, "--catalog", cat, "--wait", "--timeout", "4m")
	cmd.Env = append(os.Environ(), "JERICHOCI_NATS_URL="+url)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	first := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if len(first) < 2 || first[0] != "job" {
		t.Fatalf("enqueue output does not start with the job id:\n%s", out)
	}
	res := o.result(t, first[1])
	if res == nil {
		t.Fatalf("enqueue --wait returned (%d) before the final record:\n%s", code, out)
	}
	want := map[model.RunStatus]int{model.StatusPassed: 0, model.StatusFailed: 1}[res.Status]
	if code != want {
		t.Errorf("enqueue --wait exit code %d for a %s run, want %d:\n%s", code, res.Status, want, out)
	}
	if !strings.Contains(string(out), "run "+res.RunID+": demo-pass started") {
		t.Errorf("enqueue --wait did not show the final run's events:\n%s", out)
	}
}

// TestTwoFleetsOnOneIncusProjectLeaveEachOtherAlone runs two deployments,
// each a daemon on its own NATS server (so its own fleet), on the same
// Incus project, both reaping every second while both run jobs: neither
// touches the other's instances, so no attempt fails on infrastructure.
func TestTwoFleetsOnOneIncusProjectLeaveEachOtherAlone(t *testing.T) {
	cl := require(t)
	cat := writeCatalog(t)
	type fleet struct {
		d    *daemon
		o    *orchestrator
		keys []string
	}
	var fleets []*fleet
	for _, name := range []string{"fleet-one", "fleet-two"} {
		url := startNATS(t)
		f := &fleet{d: startDaemon(t, url, name, cat, 2, "--reap-interval", "1s"), o: newOrchestrator(t, url)}
		for i := 0; i < 3; i++ {
			id := uuid.NewString()
			f.keys = append(f.keys, id)
			f.o.publish(t, protocol.JobSubject("demo-slow"), f.o.spec(id, "demo-slow"), id)
		}
		fleets = append(fleets, f)
	}
	stamps := map[string]string{} // fleet id seen on each fleet's instances
	for _, f := range fleets {
		in := waitInstance(t, cl, f.keys[0])
		stamps[f.d.name] = in.Config[executor.ConfigFleet]
	}
	if stamps["fleet-one"] == "" || stamps["fleet-one"] == stamps["fleet-two"] {
		t.Errorf("instances carry fleets %q: want one non-empty fleet id per deployment", stamps)
	}
	for _, f := range fleets {
		results := f.o.waitResults(t, f.keys, 5*time.Minute)
		f.o.streamEmpty(t)
		runs := diskRuns(t, f.d)
		for _, k := range f.keys {
			res := results[k]
			if res.Status != model.StatusPassed {
				t.Errorf("%s job %s: %s %q, want passed", f.d.name, k, res.Status, model.Value(res.Message))
			}
			for _, r := range runs[k] {
				if strings.HasPrefix(model.Value(r.rec.Message), "infrastructure error") {
					t.Errorf("%s job %s: run %s failed on infrastructure: %s", f.d.name, k, r.rec.RunID, model.Value(r.rec.Message))
				}
			}
			if len(runs[k]) != 1 {
				t.Errorf("%s job %s: %d runs, want 1", f.d.name, k, len(runs[k]))
			}
		}
		checkNoInstances(t, cl, f.keys...)
	}
}

// startNATS runs the test binary nats-server (itest.StartNATS).
func startNATS(t *testing.T) string { return itest.StartNATS(t, natsBin) }
