package daemon_test

// Partitions of the multi-host test bed (hosts_test.go): each test ends
// with exactly one final record per job and no instance of its jobs, and
// logs how long the fleet took to recover (reported, never asserted).

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// exitOf is cmd's exit code after Wait's err (-1: it did not run).
func exitOf(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// enqueuedID is the job id enqueue printed first ("job ID").
func enqueuedID(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if len(f) < 2 || f[0] != "job" {
		t.Fatalf("enqueue output does not start with the job id:\n%s", out)
	}
	return f[1]
}

// TestHostsRunAndEnqueueOverHTTPSOnly: `run demo-pass` on a host and
// `enqueue --wait` from the client pass, with every daemon and the run in
// a namespace whose incusd is reachable only over HTTPS (INCUS_SOCKET
// points nowhere).
func TestHostsRunAndEnqueueOverHTTPSOnly(t *testing.T) {
	b := startTestBed(t, 1)
	dir := sourceDir(t)

	t.Run("run demo-pass in a namespace", func(t *testing.T) {
		args := append([]string{"run", "demo-pass", "--source", dir, "--state-root", t.TempDir(), "--catalog", b.catalog}, b.incus...)
		cmd := b.hosts[0].ns.Command("env", append([]string{"INCUS_SOCKET=" + noSocket, jciBin}, args...)...)
		cmd.Env = itest.CleanEnv()
		out, err := cmd.CombinedOutput()
		if code := exitOf(t, err); code != 0 || !strings.Contains(string(out), "PASSED 1 passed") {
			t.Fatalf("run demo-pass on %s: exit %d\n%s", b.hosts[0].ns.NS, code, out)
		}
	})

	t.Run("enqueue --wait from the client", func(t *testing.T) {
		cmd := b.clientCmd("enqueue", "demo-pass", "--source", dir, "--catalog", b.catalog, "--wait", "--timeout", "4m")
		out, err := cmd.CombinedOutput()
		code := exitOf(t, err)
		id := enqueuedID(t, string(out))
		res := b.o.waitResults(t, []string{id}, time.Minute)[id]
		if code != 0 || !strings.Contains(string(out), "PASSED 1 passed") {
			t.Fatalf("enqueue --wait: exit %d\n%s", code, out)
		}
		checkPassed(t, id, res)
		checkOneFinal(t, id, res, diskRuns(t, b.daemons()...)[id])
		checkNoInstances(t, b.cl, id)
	})
}

// TestHostsWorkerCutOffMidJob cuts the link of the host whose daemon runs
// a job, mid-job: the job runs again on another host; when the link comes
// back, the cut daemon's late attempt is refused (marked not final) and
// its instance reaped.
func TestHostsWorkerCutOffMidJob(t *testing.T) {
	b := startTestBed(t, 1)
	src := b.o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("# hosts test\n"))))
	id := uuid.NewString()
	b.o.publish(t, protocol.JobSubject("demo-slow"), specWith(t, id, "demo-slow", src, nil), id)
	first := waitInstance(t, b.cl, id)
	firstRun := first.Config[executor.ConfigRunID]
	claim := clusterRetry(t, "the job's claim", time.Minute, func(ctx context.Context) (*protocol.Claim, error) {
		if c := b.o.claim(t, id); c != nil {
			return c, nil
		}
		return nil, errors.New("no claim yet")
	})
	var victim *bedHost
	for _, bh := range b.hosts {
		if strings.HasPrefix(claim.Worker, bh.d.name) {
			victim = bh
		}
	}
	if victim == nil {
		t.Fatalf("the claim's worker %q is none of the bed's daemons", claim.Worker)
	}
	b.net.Cut(t, victim.ns)
	cut := time.Now()
	t.Logf("cut %s (daemon %s, node %s) with run %s in instance %s", victim.ns.NS, victim.d.name, victim.node.name, firstRun, first.Name)

	results := map[string]model.RunRecord{}
	itest.WaitFor(t, "the job to run again on another host", 4*time.Minute, func() bool {
		for _, in := range instancesOf(t, b.cl, id) {
			if in.Config[executor.ConfigRunID] != firstRun && in.Status == "Running" {
				return true
			}
		}
		b.o.pollResults(t, []string{id}, results)
		return len(results) == 1
	})
	again := time.Since(cut)
	itest.WaitFor(t, "the job's final record", 5*time.Minute, func() bool {
		b.o.pollResults(t, []string{id}, results)
		return len(results) == 1
	})
	final := time.Since(cut)
	res := results[id]
	if res.RunID == firstRun {
		t.Fatalf("the result is the cut host's run %s", firstRun)
	}
	checkPassed(t, id, res)

	b.net.Heal(t, victim.ns)
	healed := time.Now()
	// The cut daemon's attempt settles once it hears from NATS again: its
	// run.json is then no longer "running", and marked not final.
	itest.WaitFor(t, "the cut daemon's attempt to settle", 4*time.Minute, func() bool {
		for _, r := range diskRuns(t, victim.d)[id] {
			if r.rec.RunID == firstRun && r.rec.Status != model.StatusRunning {
				return true
			}
		}
		return false
	})
	settled := time.Since(healed)
	itest.WaitFor(t, "the cut daemon's instance "+first.Name+" to be reaped", 4*time.Minute, func() bool {
		for _, in := range instancesOf(t, b.cl, id) {
			if in.Name == first.Name {
				return false
			}
		}
		return true
	})
	reaped := time.Since(healed)
	runs := diskRuns(t, b.daemons()...)[id]
	checkOneFinal(t, id, res, runs)
	for _, r := range runs {
		if r.rec.RunID == firstRun {
			t.Logf("the cut daemon's attempt: %s %q", r.rec.Status, model.Value(r.rec.Message))
		}
	}
	checkNoInstances(t, b.cl, id)
	b.o.streamEmpty(t)
	itest.Report(t, "recovery: the job ran again %.1fs after the cut, its final record %.1fs after; after the heal the late attempt settled in %.1fs, its instance was gone in %.1fs",
		again.Seconds(), final.Seconds(), settled.Seconds(), reaped.Seconds())
}

// TestHostsClientNodeCutOff cuts the host of the NATS node `enqueue
// --wait` on the client is connected to, mid-run: the client, given every
// node's URL, reconnects to another node and still prints the final
// status.
func TestHostsClientNodeCutOff(t *testing.T) {
	b := startTestBed(t, 1)
	dir := sourceDir(t)
	cmd := b.clientCmd("enqueue", "demo-slow", "--source", dir, "--catalog", b.catalog, "--wait", "--timeout", "8m")
	var out itest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed once the command has ended, waitErr is then its end.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	var node *clusterNode
	itest.WaitFor(t, "the run to start, followed by enqueue --wait", 3*time.Minute, func() bool {
		select {
		case <-exited:
			err := waitErr
			t.Fatalf("enqueue --wait ended (%v) before the run started:\n%s", err, out.String())
		default:
		}
		if !strings.Contains(out.String(), "demo-slow started") {
			return false
		}
		node = b.clientNode("jerichoci enqueue")
		return node != nil
	})
	id := enqueuedID(t, out.String())
	victim := b.hostOf(node)
	b.net.Cut(t, victim.ns)
	cut := time.Now()
	t.Logf("cut %s: node %s, which enqueue --wait was connected to (daemon %s with it)", victim.ns.NS, node.name, victim.d.name)

	var err error
	itest.WaitFor(t, "enqueue --wait to end", 8*time.Minute, func() bool {
		select {
		case <-exited:
			err = waitErr
			return true
		default:
			return false
		}
	})
	ended := time.Since(cut)
	code := exitOf(t, err)
	results := map[string]model.RunRecord{}
	itest.WaitFor(t, "the job's final record", time.Minute, func() bool {
		b.o.pollResults(t, []string{id}, results)
		return len(results) == 1
	})
	res := results[id]
	if code != 0 || !strings.Contains(out.String(), "PASSED 1 passed") {
		t.Errorf("enqueue --wait: exit %d, want 0 and the final status\n%s", code, out.String())
	}
	checkPassed(t, id, res)
	// The cut host comes back before the checks, so that its daemon settles
	// whatever it ran and its instance is reaped.
	b.net.Heal(t, victim.ns)
	itest.WaitFor(t, "every attempt to settle", 4*time.Minute, func() bool {
		for _, r := range diskRuns(t, b.daemons()...)[id] {
			if r.rec.Status == model.StatusRunning {
				return false
			}
		}
		return true
	})
	runs := diskRuns(t, b.daemons()...)[id]
	checkOneFinal(t, id, res, runs)
	t.Logf("job %s: %d attempt(s) with a run directory:%s\nenqueue --wait printed:\n%s", id, len(runs), attempts(runs), out.String())
	checkNoInstances(t, b.cl, id)
	itest.Report(t, "recovery: enqueue --wait printed the final status %.1fs after the cut of its node", ended.Seconds())
}
