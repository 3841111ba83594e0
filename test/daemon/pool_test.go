package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// poolInstances lists the idle warm-pool instances of one daemon (its
// JERICHOCI_OWNER is the daemon's id in the pool owner key).
func poolInstances(t *testing.T, cl *incus.Client, daemonName string) []incus.Instance {
	t.Helper()
	return instancesWhere(t, cl, func(in incus.Instance) bool {
		return in.Config[executor.ConfigPool] != "" && strings.Contains(in.Config[executor.ConfigOwner], "/"+daemonName)
	})
}

// TestWarmPoolServesJobsAndIsDeletedAtExit: a daemon with --warm 1 keeps a
// started instance ready, a job takes it (and creates none of its own),
// the pool makes the next one, and serve deletes its idle instances when
// it stops.
func TestWarmPoolServesJobsAndIsDeletedAtExit(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	name := fmt.Sprintf("daemon-pool-%d", os.Getpid())
	d := startDaemon(t, url, name, writeCatalog(t), 1, "--warm", "1")
	var ready incus.Instance
	readyName := waitPoolReady(t, d, 1)
	for _, in := range poolInstances(t, cl, name) {
		if in.Name == readyName {
			ready = in
		}
	}
	if ready.Name == "" {
		t.Fatalf("the pool's ready instance %s is not among the daemon's instances", readyName)
	}
	if ready.Config[executor.ConfigFleet] == "" || ready.Config[executor.ConfigRunID] != "pool" {
		t.Errorf("pool instance config = %v", ready.Config)
	}
	o := newOrchestrator(t, url)
	for i := 0; i < 2; i++ {
		id := uuid.NewString()
		o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
		res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
		if res.Status != model.StatusPassed {
			t.Fatalf("job %d: %s %q", i, res.Status, model.Value(res.Message))
		}
		host, err := os.ReadFile(filepath.Join(jobDir(d.stateRoot, res.RunID, "hello"), "host.log"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && !strings.Contains(string(host), "instance "+ready.Name+" (container) taken from the warm pool") {
			t.Errorf("the first job did not take the ready instance %s:\n%s", ready.Name, host)
		}
		if !strings.Contains(string(host), "taken from the warm pool") || strings.Contains(string(host), ") started from ") {
			t.Errorf("job %d created its own instance:\n%s", i, host)
		}
		checkNoInstances(t, cl, id)
		// The pool makes a new one after each take.
		waitPoolReady(t, d, i+2)
	}
	// serve deletes its idle instances when it stops.
	stopDaemon(t, d)
	if left := poolInstances(t, cl, name); len(left) > 0 {
		t.Errorf("pool instances left after serve stopped: %s", left[0].Name)
	}
	if _, err := os.Stat(filepath.Join(d.stateRoot, "pool")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(d.stateRoot, "pool"))
		if len(entries) > 0 {
			t.Errorf("pool host directories left: %d", len(entries))
		}
	}
}

// waitPoolReady waits until the daemon has logged its n-th pool instance
// ready (in its list, a job takes it from then on; incusd's "Running"
// comes earlier) and returns that instance's name.
func waitPoolReady(t *testing.T, d *daemon, n int) string {
	t.Helper()
	var name string
	itest.WaitFor(t, fmt.Sprintf("pool instance %d ready", n), 2*time.Minute, func() bool {
		m := poolReadyRE.FindAllStringSubmatch(d.log.String(), -1)
		if len(m) < n {
			return false
		}
		name = m[n-1][1]
		return true
	})
	return name
}

var poolReadyRE = regexp.MustCompile(`"msg":"warm pool: instance ready"[^\n]*"instance":"([^"]+)"`)

// stopDaemon sends the daemon SIGTERM and waits until it has exited
// (idle pool instances deleted, drained), failing the test after two
// minutes.
func stopDaemon(t *testing.T, d *daemon) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("daemon %s did not stop within 2 minutes of SIGTERM", d.name)
	}
}
