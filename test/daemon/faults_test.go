package daemon_test

// Fault tests: the NATS server killed mid-job, a full state root next to a
// healthy daemon of the same fleet. (incusd killed mid-job is in
// test/incusfault, which holds the incusd test lock exclusively.) Each ends
// with one final record per job, an empty work stream and no instance of
// the jobs left once the reaper (every 3 s here) has run.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/executor"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// natsProc is a separate nats-server process that can be killed and
// started again with the same arguments: same port, same store directory.
type natsProc struct {
	t     *testing.T
	args  []string
	url   string
	store string
	cmd   *exec.Cmd
	log   *itest.SyncBuffer
	done  chan struct{}
}

// startKillableNATS runs nats-server with JetStream as startNATS does, but
// keeps what it needs to kill it and start it again.
func startKillableNATS(t *testing.T) *natsProc {
	t.Helper()
	port := itest.FreePort(t)
	n := &natsProc{t: t, store: t.TempDir(), log: &itest.SyncBuffer{}}
	n.args = []string{"-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", n.store}
	n.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	n.start()
	t.Cleanup(func() {
		if n.cmd != nil {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			t.Logf("nats-server log:\n%s", itest.Tail(n.log.String(), 40))
		}
	})
	return n
}

// start runs the server and waits until it takes connections and its
// JetStream answers.
func (n *natsProc) start() {
	t := n.t
	t.Helper()
	n.cmd = exec.Command(natsBin, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.done = make(chan struct{})
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, done := n.cmd, n.done
	go func() { _ = cmd.Wait(); close(done) }()
	itest.WaitFor(t, "nats-server on "+n.url, 30*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("nats-server exited at start (%v):\n%s", cmd.ProcessState, itest.Tail(n.log.String(), 40))
		default:
		}
		nc, err := nats.Connect(n.url)
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		_, err = js.AccountInfo(t.Context())
		return err == nil
	})
}

// kill9 sends SIGKILL (no shutdown, no flush) and waits for the process.
func (n *natsProc) kill9() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		n.t.Fatal(err)
	}
	<-n.done
	n.cmd = nil
}

// resilientOrchestrator is an orchestrator whose connection outlives a
// server restart (reconnects for ever, every 250 ms).
func resilientOrchestrator(t *testing.T, url string) *orchestrator {
	t.Helper()
	return newOrchestrator(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1))
}

// workStreamMsgs is the number of messages in the work stream; an error
// while the server or its JetStream is not back yet.
func (o *orchestrator) workStreamMsgs(t *testing.T) (uint64, error) {
	s, err := o.js.Stream(t.Context(), protocol.StreamJobs)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(t.Context())
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// checkFaultEnd is the common end of a fault test: every job has exactly
// one value in jerichoci-results, its run.json agrees with it and every
// other attempt is marked not final; the work stream is empty.
func checkFaultEnd(t *testing.T, o *orchestrator, results map[string]model.RunRecord, ds ...*daemon) map[string][]diskRun {
	t.Helper()
	o.streamEmpty(t)
	runs := diskRuns(t, ds...)
	for k, res := range results {
		if n := kvHistory(t, o.results, k); n != 1 {
			t.Errorf("job %s: %d values in %s, want exactly 1", k, n, protocol.BucketResults)
		}
		checkOneFinal(t, k, res, runs[k])
	}
	return runs
}

// TestNATSKill9MidJobQueuedJobsSurviveAndTheResultLands kills the NATS
// server (kill -9: no flush, no goodbye) while a job runs and three more
// wait in the queue, and starts it again 3 s later on the same port and
// store directory. The daemon reconnects by itself; the queued jobs are
// still in the stream and run; the running job's final record lands. Two
// cases: the job's command outlives the outage, or the job ends (and the
// daemon settles it) while the server is down (8 s there).
func TestNATSKill9MidJobQueuedJobsSurviveAndTheResultLands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sleep int           // seconds the running job's command sleeps after "start"
		down  time.Duration // how long the server stays dead
	}{
		{"job outlives the outage", 12, 3 * time.Second},
		{"job ends during the outage", 1, 8 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) { natsKillMidJob(t, tc.sleep, tc.down) })
	}
}

func natsKillMidJob(t *testing.T, sleep int, down time.Duration) {
	cl := require(t)
	srv := startKillableNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "nats-slow", Command: fmt.Sprintf("echo start; sleep %d; echo done", sleep)})
	d := startDaemon(t, srv.url, "daemon-a", cat, 1)
	o := resilientOrchestrator(t, srv.url)

	running := uuid.NewString()
	o.publish(t, protocol.JobSubject("nats-slow"), o.spec(running, "nats-slow"), running)
	first := waitInstance(t, cl, running)
	firstRun := first.Config[executor.ConfigRunID]
	var queued []string
	for i := 0; i < 3; i++ {
		id := uuid.NewString()
		queued = append(queued, id)
		o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
	}
	// Mid-job: the guest runner has started the command.
	itest.WaitFor(t, "the running job's command to start", 2*time.Minute, func() bool {
		b, _ := os.ReadFile(filepath.Join(jobDir(d.stateRoot, firstRun, "job"), "host.log"))
		return bytes.Contains(b, []byte("[runner:stdout] start"))
	})
	before, err := o.workStreamMsgs(t)
	if err != nil {
		t.Fatal(err)
	}
	if before != 4 { // the running job's message is not acked yet
		t.Fatalf("%d messages in the work stream before the kill, want 4 (1 running, 3 queued)", before)
	}

	srv.kill9()
	killed := time.Now()
	time.Sleep(down)
	srv.start()
	restarted := time.Now()
	var after uint64
	itest.WaitFor(t, "the work stream after the restart", time.Minute, func() bool {
		after, err = o.workStreamMsgs(t)
		return err == nil
	})
	if after < 3 || after > 4 {
		t.Errorf("%d messages in the work stream after the restart, want the 3 queued ones (and the running one unless it is settled)", after)
	}
	itest.WaitFor(t, "the daemon to reconnect", time.Minute, func() bool {
		return itest.LinesWith(d.log.String(), "nats reconnected") > 0
	})
	reconnected := time.Now()

	o.waitResults(t, []string{running}, 3*time.Minute)
	runningDone := time.Now()
	keys := append([]string{running}, queued...)
	results := o.waitResults(t, keys, 5*time.Minute)
	done := time.Now()
	runs := checkFaultEnd(t, o, results, d)
	attempts := 0
	for _, k := range keys {
		checkPassedAny(t, k, results[k])
		attempts += len(runs[k])
	}
	var ended string
	for _, r := range runs[running] {
		if r.rec.RunID == firstRun && r.rec.FinishedAt != nil {
			ended = fmt.Sprintf("%+.1fs", r.rec.FinishedAt.Sub(killed).Seconds())
		}
	}
	t.Logf("nats-server down %.1fs; the cut run ended at %s from the kill; daemon reconnected %.1fs after the restart; "+
		"the running job's result %.1fs and all %d results %.1fs after the restart; %d attempts for %d jobs (running job: %d, result run %s, cut run %s); "+
		"daemon warnings: %d pull failed, %d in progress, %d refresh claim, %d store the final record",
		restarted.Sub(killed).Seconds(), ended, reconnected.Sub(restarted).Seconds(), runningDone.Sub(restarted).Seconds(),
		len(keys), done.Sub(restarted).Seconds(), attempts, len(keys), len(runs[running]), results[running].RunID, firstRun,
		itest.LinesWith(d.log.String(), "pull failed"), itest.LinesWith(d.log.String(), `"in progress"`), itest.LinesWith(d.log.String(), "refresh claim"),
		itest.LinesWith(d.log.String(), "store the final record"))
	checkNoInstances(t, cl, keys...)
	if itest.LinesWith(d.log.String(), "nats disconnected") == 0 {
		t.Errorf("the daemon did not log the disconnection")
	}
	select {
	case <-d.done:
		t.Errorf("the daemon exited (%v) after the NATS outage", d.cmd.ProcessState)
	default:
	}
}

// checkPassedAny asserts a passed result with every job "test passed".
func checkPassedAny(t *testing.T, key string, res model.RunRecord) {
	t.Helper()
	if res.Status != model.StatusPassed || len(res.Jobs) == 0 {
		t.Errorf("job %s: result %s %q, want passed", key, res.Status, model.Value(res.Message))
		return
	}
	for _, j := range res.Jobs {
		if model.Value(j.Message) != "test passed" {
			t.Errorf("job %s: job %s %q, want \"test passed\"", key, j.ID, model.Value(j.Message))
		}
	}
}

// mountFullTmpfs mounts a 4 MiB tmpfs at a temporary directory with a
// runs/ folder and fills it; it skips (fails in CI) without root.
func mountFullTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		msg := "mount a 4 MiB tmpfs (needs root): " + err.Error()
		testenv.Missing(t, "%s", msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		t.Fatal(err)
	}
	fillDisk(t, filepath.Join(dir, "fill"))
	return dir
}

// TestFullStateRootLeavesTheFleetServing: a daemon whose state root is
// full fails its job (one final record, failed, "no space left on
// device") and keeps running; another daemon of the same fleet, with a
// healthy state root, then serves new jobs, which pass, while the full
// daemon is still there pulling.
func TestFullStateRootLeavesTheFleetServing(t *testing.T) {
	cl := require(t)
	full := mountFullTmpfs(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	// The queue's defaults for deliveries; the harness's short retry delay.
	flags := []string{"--max-deliver", "4", "--retry-delay", "500ms"}
	bad := startDaemon(t, url, "daemon-full", cat, 1, append([]string{"--state-root", full}, flags...)...)
	o := newOrchestrator(t, url)

	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
	res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
	if res.Status != model.StatusFailed || !strings.Contains(model.Value(res.Message), "no space left on device") {
		t.Errorf("job on the full daemon: %s %q, want failed with \"no space left on device\"", res.Status, model.Value(res.Message))
	}
	o.streamEmpty(t)
	if n := kvHistory(t, o.results, id); n != 1 {
		t.Errorf("%d values of %s in %s, want 1", n, id, protocol.BucketResults)
	}
	fullAttempts := itest.LinesWith(bad.log.String(), "job settled", id)
	t.Logf("the job on the full daemon: %d deliveries, final %q", fullAttempts, model.Value(res.Message))

	good := startDaemon(t, url, "daemon-ok", cat, 1, flags...)
	var keys []string
	for i := 0; i < 4; i++ {
		k := uuid.NewString()
		keys = append(keys, k)
		o.publish(t, protocol.JobSubject("demo-pass"), o.spec(k, "demo-pass"), k)
	}
	start := time.Now()
	results := o.waitResults(t, keys, 5*time.Minute)
	took := time.Since(start)
	o.streamEmpty(t)
	runs := diskRuns(t, good)
	perDaemon := map[string]int{}
	for _, k := range keys {
		res := results[k]
		if n := kvHistory(t, o.results, k); n != 1 {
			t.Errorf("job %s: %d values in %s, want exactly 1", k, n, protocol.BucketResults)
		}
		onFull := itest.LinesWith(bad.log.String(), "job settled", k)
		perDaemon["daemon-full"] += onFull
		perDaemon["daemon-ok"] += len(runs[k])
		if res.Status != model.StatusPassed {
			t.Errorf("job %s: %s %q after %d deliveries to the full daemon and %d to the healthy one: want passed, "+
				"served by the healthy daemon", k, res.Status, model.Value(res.Message), onFull, len(runs[k]))
			continue
		}
		checkPassed(t, k, res)
		checkOneFinal(t, k, res, runs[k])
	}
	t.Logf("4 jobs after the full one: results in %.1fs; attempts per daemon %v", took.Seconds(), perDaemon)
	select {
	case <-bad.done:
		t.Errorf("the full daemon exited (%v)", bad.cmd.ProcessState)
	default:
		if err := bad.cmd.Process.Signal(syscall.Signal(0)); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("the full daemon is gone: %v", err)
		}
	}
	checkNoInstances(t, cl, append(keys, id)...)
}
