package main

import (
	"context"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/model"
	"jerichoci/run"
)

// localExecutor builds what a local run (`run`, `rerun`) executes jobs
// with; close releases it. Without a usable Incus connection every Incus
// job fails with the reason, so the run is still recorded.
func (c *cli) localExecutor(ctx context.Context, cfg execConfig, stateRoot string, log *zap.Logger) (run.JobExecutor, func()) {
	cl, err := cfg.incusClient(c.env, log)
	if err != nil {
		return brokenExecutor{err}, func() {}
	}
	incus.ReapLocalOrphans(ctx, cl, processAlive, c.stderr, log)
	return &executor.RemoteLinuxVM{Backend: incus.NewBackend(cl), Config: cfg.executorConfig(), Log: log.Named("executor")}, func() { cl.Close() }
}

// localRunner is the run lifecycle of a local run.
func (c *cli) localRunner(cfg execConfig, stateRoot string) *run.Runner {
	return &run.Runner{
		StateRoot: stateRoot, Env: c.env, MaxConcurrent: cfg.MaxConcurrent,
		Snapshot: func(ctx context.Context, s, dst string, o run.SnapshotOptions) (model.SnapshotMetadata, error) {
			o.Exclude = append(o.Exclude, stateRoot)
			return run.CopySnapshot(ctx, s, dst, o)
		},
	}
}
