package main

import (
	"context"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/executor/hostlocal"
	"jerichoci/executor/incus"
	"jerichoci/model"
	"jerichoci/nixbuild"
	"jerichoci/run"
)

// hostExecutor runs host-local jobs under stateRoot's cache, their dev
// shells with the nix program nix ("" for nix on PATH).
func hostExecutor(env model.LookupEnv, stateRoot, nix string, log *zap.Logger) *hostlocal.Executor {
	return &hostlocal.Executor{StateRoot: stateRoot, Env: env, Nix: nix, Log: log}
}

// localExecutor builds what a local run (`run`, `rerun`) executes jobs
// with; close releases it. Host-local jobs run on this machine, as with
// the original. Without a usable Incus connection (a remote incusd is
// checked first: reachable, its pinned certificate, ours trusted for the
// project) every Incus job fails with the reason, so the run is still
// recorded.
func (c *cli) localExecutor(ctx context.Context, cfg execConfig, stateRoot string, log *zap.Logger) (run.JobExecutor, func()) {
	host := hostExecutor(c.env, stateRoot, cfg.Nix, log.Named("hostlocal"))
	cl, err := cfg.incusClient(c.env, log)
	if err == nil {
		if err = cfg.Remote.checkIncusAccess(ctx, cl); err != nil {
			cl.Close()
		}
	}
	if err != nil {
		return run.JobRouter{Incus: brokenExecutor{err}, Host: host}, func() {}
	}
	incus.ReapLocalOrphans(ctx, cl, processAlive, c.stderr, log)
	vm := &executor.RemoteLinuxVM{Backend: incus.NewBackend(cl), Config: cfg.executorConfig(), Log: log.Named("executor"), Store: hostNix(cfg.Nix, log)}
	return run.JobRouter{Incus: vm, Host: host}, func() { cl.Close() }
}

// hostNix is the host's Nix, the program nix ("" for nix on PATH): it
// builds staged outputs and gives their closure, the store paths a staged
// guest sees.
func hostNix(nix string, log *zap.Logger) *nixbuild.Builder {
	return &nixbuild.Builder{Program: nix, Log: log.Named("nix")}
}

// newRunner is the run lifecycle with the host's Nix for staged outputs.
func newRunner(env model.LookupEnv, cfg execConfig, stateRoot string, log *zap.Logger) run.Runner {
	return run.Runner{
		StateRoot: stateRoot, Env: env, MaxConcurrent: cfg.MaxConcurrent,
		Snapshot:       run.SnapshotsOutside(stateRoot),
		Outputs:        hostNix(cfg.Nix, log),
		HostCacheScope: hostlocal.Scope,
	}
}

// localRunner is the run lifecycle of a local run, logging to the run's log.
func (c *cli) localRunner(cfg execConfig, stateRoot string, log *zap.Logger) *run.Runner {
	r := newRunner(c.env, cfg, stateRoot, log)
	return &r
}
