package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/executor/hostlocal"
	"jerichoci/executor/incus"
	"jerichoci/model"
	"jerichoci/nixbuild"
	"jerichoci/run"
)

// jobRouter sends each job to the executor of its runtime: Incus jobs to
// the remote Linux VM executor, host_process jobs to the host-local one.
type jobRouter struct {
	incus run.JobExecutor
	host  run.JobExecutor
}

func (r jobRouter) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	if job.Runtime.Kind == model.RuntimeHostProcess {
		return r.host.Execute(ctx, job)
	}
	return r.incus.Execute(ctx, job)
}

// PrepareRunner is the Incus executor's runner check.
func (r jobRouter) PrepareRunner(ctx context.Context, job executor.Job) error {
	if p, ok := r.incus.(run.RunnerPreparer); ok {
		return p.PrepareRunner(ctx, job)
	}
	return nil
}

// MsgHostJobsRefused is the result of a host-local job on a daemon started
// without --allow-host-jobs.
const MsgHostJobsRefused = "host-local job refused: this daemon runs host_shell commands on the worker itself only when started with --allow-host-jobs"

// refuseHostJobs fails every host-local job with MsgHostJobsRefused: a
// result, not an infrastructure error, so it is not retried.
type refuseHostJobs struct{}

func (refuseHostJobs) Execute(_ context.Context, job executor.Job) (executor.Result, error) {
	if job.HostLog != nil {
		fmt.Fprintf(job.HostLog, "[pikaci] %s\n", MsgHostJobsRefused)
	}
	return executor.Result{Status: model.StatusFailed, Message: MsgHostJobsRefused}, nil
}

// MsgStagedBuildsRefused is why a daemon started without
// --allow-staged-builds fails a staged job's output prepare node.
const MsgStagedBuildsRefused = "refused: this daemon builds staged outputs (the Nix flake of the job's source, on the worker host) only when started with --allow-staged-builds"

// refuseStagedBuilds is the OutputBuilder of such a daemon.
type refuseStagedBuilds struct{}

func (refuseStagedBuilds) Realize(context.Context, string, io.Writer) (run.RealizedOutput, error) {
	return run.RealizedOutput{}, errors.New(MsgStagedBuildsRefused)
}

// hostExecutor runs host-local jobs under stateRoot's cache.
func hostExecutor(env model.LookupEnv, stateRoot string, log *zap.Logger) *hostlocal.Executor {
	return &hostlocal.Executor{StateRoot: stateRoot, Env: env, Log: log}
}

// localExecutor builds what a local run (`run`, `rerun`) executes jobs
// with; close releases it. Host-local jobs run on this machine, as with
// the original. Without a usable Incus connection every Incus job fails
// with the reason, so the run is still recorded.
func (c *cli) localExecutor(ctx context.Context, cfg execConfig, stateRoot string, log *zap.Logger) (run.JobExecutor, func()) {
	host := hostExecutor(c.env, stateRoot, log.Named("hostlocal"))
	cl, err := cfg.incusClient(c.env, log)
	if err != nil {
		return jobRouter{incus: brokenExecutor{err}, host: host}, func() {}
	}
	incus.ReapLocalOrphans(ctx, cl, processAlive, c.stderr, log)
	vm := &executor.RemoteLinuxVM{Backend: incus.NewBackend(cl), Config: cfg.executorConfig(), Log: log.Named("executor"), Store: hostNix(log)}
	return jobRouter{incus: vm, host: host}, func() { cl.Close() }
}

// hostNix is the host's Nix: it builds staged outputs and gives their
// closure, the store paths a staged guest sees.
func hostNix(log *zap.Logger) *nixbuild.Builder {
	return &nixbuild.Builder{Log: log.Named("nix")}
}

// newRunner is the run lifecycle with the host's Nix for staged outputs.
func newRunner(env model.LookupEnv, cfg execConfig, stateRoot string, log *zap.Logger) run.Runner {
	return run.Runner{
		StateRoot: stateRoot, Env: env, MaxConcurrent: cfg.MaxConcurrent,
		Snapshot: func(ctx context.Context, s, dst string, o run.SnapshotOptions) (model.SnapshotMetadata, error) {
			o.Exclude = append(o.Exclude, stateRoot)
			return run.CopySnapshot(ctx, s, dst, o)
		},
		Outputs:        hostNix(log),
		HostCacheScope: hostlocal.Scope,
	}
}

// localRunner is the run lifecycle of a local run, logging to the run's log.
func (c *cli) localRunner(cfg execConfig, stateRoot string, log *zap.Logger) *run.Runner {
	r := newRunner(c.env, cfg, stateRoot, log)
	return &r
}
