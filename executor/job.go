// Package executor runs one job of a run in a throwaway instance. The run
// lifecycle (package run) drives it; backends (executor/incus) sit behind
// the small Backend interface declared here.
package executor

import (
	"errors"
	"io"

	"jerichoci/internal/mask"
	"jerichoci/model"
)

// Job is one job the run lifecycle asks to execute.
type Job struct {
	RunID       string
	ID          string
	Description string
	TimeoutSecs uint64
	Command     model.JobCommand
	Runtime     model.RuntimeConfig
	Writable    bool
	// Image is the role and alias already resolved by the run's prepare node.
	Image model.IncusImage
	// SnapshotDir is the source snapshot on the host, shown read-only at
	// /workspace/snapshot in the guest.
	SnapshotDir string
	// JobDir is <state>/runs/<run_id>/jobs/<job_id>; artifacts go below it.
	JobDir string
	// HostLog receives "[pikaci] …" lines and the runner's output as it
	// comes, as prefixed lines of at most 64 KiB, up to
	// Config.HostLogRunnerBytes of it (artifacts/guest.log has all of it);
	// it must be safe for use from several goroutines.
	HostLog io.Writer

	// StagedPayloads are the prepared outputs a staged job's guest sees,
	// deps first: each is the job's staged-linux-rust/<role> symlink to a
	// realized Nix store path, whose share/pikaci/payload-manifest.json
	// says where to mount it (docs/CONTRACTS.md, "Staged payload devices").
	StagedPayloads []StagedPayload
	// HostCacheScope is the host-local cache scope of a host-local job
	// (target-<id>, job-<id> or adhoc-<hash>), under
	// <state>/cache/host-local/.
	HostCacheScope string
	// SecretEnv is the job's secret_env with the worker's values: passed
	// into the guest (never into a request on the host, a record or a log).
	SecretEnv map[string]string
	// Mask hides the secret values; executors mask the output streams
	// with it before cutting them into lines, and every file they keep.
	Mask *mask.Secrets
}

// StagedPayload is one prepared output handed to a job.
type StagedPayload struct {
	Role      string // workspace-deps or workspace-build
	MountPath string // <job dir>/staged-linux-rust/<role>, a symlink into /nix/store
}

// Result is the outcome of a job that ran: passed or failed, never an
// infrastructure error.
type Result struct {
	Status    model.RunStatus
	ExitCode  *int32
	Message   string
	Execution *model.RemoteLinuxVMExecutionRecord
}

// Error is an infrastructure failure of one job. It keeps the execution
// record (phases, image) gathered until the failure, so the failed job
// record still shows them.
type Error struct {
	Err       error
	Execution *model.RemoteLinuxVMExecutionRecord
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ExecutionOf returns the execution record carried by err, if any.
func ExecutionOf(err error) *model.RemoteLinuxVMExecutionRecord {
	var e *Error
	if errors.As(err, &e) {
		return e.Execution
	}
	return nil
}
