package daemon_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/run/protocol"
)

// instancesOfProcess lists the instances whose creating process is process
// (executor.ConfigProcess), pool and job instances alike.
func instancesOfProcess(t *testing.T, cl *incus.Client, process string) []incus.Instance {
	t.Helper()
	return instancesWhere(t, cl, func(in incus.Instance) bool { return in.Config[executor.ConfigProcess] == process })
}

// instancesWhere lists the instances of the project for which keep is true.
func instancesWhere(t *testing.T, cl *incus.Client, keep func(incus.Instance) bool) []incus.Instance {
	t.Helper()
	all, err := cl.ListInstances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []incus.Instance
	for _, in := range all {
		if keep(in) {
			out = append(out, in)
		}
	}
	return out
}

func instanceNames(list []incus.Instance) []string {
	var out []string
	for _, in := range list {
		out = append(out, in.Name)
	}
	slices.Sort(out)
	return out
}

// TestReapInstancesOfKilledDaemon: a daemon with --warm 2 running a job is
// killed with SIGKILL; a daemon of another fleet (its own nats-server)
// started afterwards deletes the killed one's pool instances and its job's
// instance, and leaves alone the instances of a third daemon that lives
// (another fleet too). No bound on how fast: the poll's bound is generous.
func TestReapInstancesOfKilledDaemon(t *testing.T) {
	cl := require(t)
	cat := writeCatalog(t)
	// The live daemon, of its own fleet: its pool must survive.
	liveName := fmt.Sprintf("reap-live-%d", os.Getpid())
	live := startDaemon(t, startNATS(t), liveName, cat, 1, "--warm", "1")
	waitPoolReady(t, live, 1)
	liveInsts := poolInstances(t, cl, liveName)
	if len(liveInsts) != 1 || liveInsts[0].Config[executor.ConfigProcess] == "" {
		t.Fatalf("the live daemon's pool instances = %v, want one with %s", instanceNames(liveInsts), executor.ConfigProcess)
	}
	liveProcess := liveInsts[0].Config[executor.ConfigProcess]

	// The victim: two warm instances and a job of its own running.
	victimURL := startNATS(t)
	victimName := fmt.Sprintf("reap-victim-%d", os.Getpid())
	victim := startDaemon(t, victimURL, victimName, cat, 1, "--warm", "2")
	waitPoolReady(t, victim, 2)
	pool := poolInstances(t, cl, victimName)
	if len(pool) != 2 {
		t.Fatalf("the victim's pool instances = %v, want 2", instanceNames(pool))
	}
	victimProcess := pool[0].Config[executor.ConfigProcess]
	if victimProcess == "" || victimProcess == liveProcess {
		t.Fatalf("the victim's process key %q (the live daemon's: %q)", victimProcess, liveProcess)
	}
	o := newOrchestrator(t, victimURL)
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-slow"), o.spec(id, "demo-slow"), id)
	itest.WaitFor(t, "the victim's job to run in an instance", 3*time.Minute, func() bool {
		for _, in := range instancesOfProcess(t, cl, victimProcess) {
			if in.Config[executor.ConfigRunID] != "pool" {
				return true
			}
		}
		return false
	})
	_ = victim.cmd.Process.Kill() // SIGKILL: no drain, no teardown
	<-victim.done
	left := instancesOfProcess(t, cl, victimProcess)
	t.Logf("the killed daemon left %d instances: %v", len(left), instanceNames(left))
	if len(left) < 2 {
		t.Fatalf("the killed daemon left %v; want its pool and its job's instance, to see them reaped", instanceNames(left))
	}

	// A daemon of another fleet, no pool of its own, starts: its reaper
	// runs at once.
	other := startDaemon(t, startNATS(t), fmt.Sprintf("reap-other-%d", os.Getpid()), cat, 1)
	itest.WaitFor(t, "the killed daemon's instances to be reaped", 3*time.Minute, func() bool {
		return len(instancesOfProcess(t, cl, victimProcess)) == 0
	})
	if got := instanceNames(instancesOfProcess(t, cl, liveProcess)); !slices.Equal(got, instanceNames(liveInsts)) {
		t.Errorf("the live daemon's instances = %v after another daemon's start, want %v untouched", got, instanceNames(liveInsts))
	}
	if !strings.Contains(other.log.String(), "reaped an instance whose process on this host is gone") {
		t.Errorf("the reaping daemon did not log its reaps:\n%s", itest.Tail(other.log.String(), 40))
	}
	stopDaemon(t, other)
	stopDaemon(t, live)
	if left := instancesOfProcess(t, cl, liveProcess); len(left) > 0 {
		t.Errorf("the live daemon left %v after a clean stop", instanceNames(left))
	}
}
