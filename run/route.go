package run

import (
	"context"
	"errors"
	"fmt"
	"io"

	"jerichoci/executor"
	"jerichoci/model"
)

// JobRouter sends each job to the executor of its runtime: host_process
// jobs to Host, every other job (the incus runtime) to Incus.
type JobRouter struct {
	Incus JobExecutor
	Host  JobExecutor
}

// Execute runs job on the executor of its runtime.
func (r JobRouter) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	if job.Runtime.Kind == model.RuntimeHostProcess {
		return r.Host.Execute(ctx, job)
	}
	return r.Incus.Execute(ctx, job)
}

// PrepareRunner is the Incus executor's runner check.
func (r JobRouter) PrepareRunner(ctx context.Context, job executor.Job) error {
	if p, ok := r.Incus.(RunnerPreparer); ok {
		return p.PrepareRunner(ctx, job)
	}
	return nil
}

// MsgHostJobsRefused is the result of a host-local job on a daemon started
// without --allow-host-jobs.
const MsgHostJobsRefused = "host-local job refused: this daemon runs host_shell commands on the worker itself only when started with --allow-host-jobs"

// RefuseHostJobs fails every host-local job with MsgHostJobsRefused: a
// result, not an infrastructure error, so it is not retried.
type RefuseHostJobs struct{}

// Execute fails job with MsgHostJobsRefused, written to its host log too.
func (RefuseHostJobs) Execute(_ context.Context, job executor.Job) (executor.Result, error) {
	if job.HostLog != nil {
		fmt.Fprintf(job.HostLog, "[pikaci] %s\n", MsgHostJobsRefused)
	}
	return executor.Result{Status: model.StatusFailed, Message: MsgHostJobsRefused}, nil
}

// MsgStagedBuildsRefused is why a daemon started without
// --allow-staged-builds fails a staged job's output prepare node.
const MsgStagedBuildsRefused = "refused: this daemon builds staged outputs (the Nix flake of the job's source, on the worker host) only when started with --allow-staged-builds"

// RefuseStagedBuilds is the OutputBuilder of such a daemon.
type RefuseStagedBuilds struct{}

// Realize refuses with MsgStagedBuildsRefused.
func (RefuseStagedBuilds) Realize(context.Context, string, io.Writer) (RealizedOutput, error) {
	return RealizedOutput{}, errors.New(MsgStagedBuildsRefused)
}
