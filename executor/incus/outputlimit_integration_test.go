package incus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

// A job that prints without end on the real incusd: at the output limit
// its runner is stopped and the job fails with the limit in its message,
// guest.log holds exactly the limit, and the instance goes. Without the
// limit it would run to its timeout, writing to the worker's disk.
func TestIntegrationOutputLimitStopsTheJob(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	var hostLog lockedBuffer
	job := itJob(t, "endless", `yes "endless output"`, &hostLog)
	job.TimeoutSecs = 600
	cfg := itConfig()
	cfg.MaxOutputBytes = 1 << 20
	res, err := (&executor.RemoteLinuxVM{Backend: NewBackend(c), Config: cfg}).Execute(t.Context(), job)
	if err != nil || res.Status != model.StatusFailed || !strings.Contains(res.Message, "output exceeded 1MiB") {
		t.Fatalf("Execute() = %+v, %v; want failed with the output limit\nhost log:\n%.3000s", res, err, hostLog.String())
	}
	fi, err := os.Stat(filepath.Join(job.JobDir, "artifacts", "guest.log"))
	if err != nil || fi.Size() != 1<<20 {
		t.Errorf("guest.log: %v, size %d; want exactly the limit, %d", err, sizeOf(fi), 1<<20)
	}
	if !strings.Contains(hostLog.String(), "the job output limit; the rest was dropped and the guest runner stopped") {
		t.Errorf("host log does not say the output was cut:\n%.3000s", hostLog.String())
	}
	if _, err := c.GetInstance(t.Context(), model.InstanceName(job.RunID, job.ID)); !IsNotFound(err) {
		t.Errorf("instance left after the job: %v", err)
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}
