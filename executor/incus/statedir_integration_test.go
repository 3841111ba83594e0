package incus

// The guest's state directory from the host (docs/INCUS.md, "Artifacts
// through a mounted directory") and the running instance's teardown,
// against the real incusd.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

func TestIntegrationStateDirMounted(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	var hostLog lockedBuffer
	// No secret environment: a job with one gets no mounted directory
	// (executor.Config.StateDirMount).
	job := itJob(t, "state-dir", `if touch /run/pika-cloud/planted 2>/dev/null; then echo job-wrote-state; else echo state-closed; fi; `+
		`ls /run/pika-cloud`, &hostLog)
	cfg := itConfig()
	cfg.StateDirMount = true
	res, err := (&executor.RemoteLinuxVM{Backend: NewBackend(c), Config: cfg}).Execute(t.Context(), job)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute() = %+v, %v\nhost log:\n%.3000s", res, err, hostLog.String())
	}
	hl := hostLog.String()
	if strings.Contains(hl, "could not collect") {
		t.Errorf("host log says an artifact was not collected:\n%.3000s", hl)
	}
	artifacts := filepath.Join(job.JobDir, "artifacts")
	guestLog, err := os.ReadFile(filepath.Join(artifacts, "guest.log"))
	if err != nil || !strings.Contains(string(guestLog), "state-closed") {
		t.Errorf("guest.log = %q, %v; want the job user unable to write the state directory", guestLog, err)
	}
	for _, name := range []string{"events.jsonl", "status.json", "result.json"} {
		if fi, err := os.Stat(filepath.Join(artifacts, name)); err != nil || fi.Size() == 0 {
			t.Errorf("artifact %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(job.JobDir, "guest-state")); !os.IsNotExist(err) {
		t.Errorf("the state directory outlived its instance: %v", err)
	}
	if _, err := c.GetInstance(t.Context(), model.InstanceName(job.RunID, job.ID)); !IsNotFound(err) {
		t.Errorf("instance left after the job: %v", err)
	}
}

func TestIntegrationDeleteRunningInstance(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	name := launch(t, c, true, nil)
	b := NewBackend(c)
	if err := b.DeleteRunningInstance(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetInstance(t.Context(), name); !IsNotFound(err) {
		t.Fatalf("instance still there: %v", err)
	}
	// A missing one is deleted already.
	if err := b.DeleteRunningInstance(t.Context(), name); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}
