package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/google/uuid"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/targets"
)

const rerunUsage = `rerun RUN_ID [--state-root DIR] [--output text|jsonl|human|json] [--catalog FILE]

Runs the target of an earlier run again, as pikaci rerun does. The target is
the run's target_id, else the id of its only job. The new run records
rerun_of=RUN_ID and the message "rerun of RUN_ID", keeps the earlier run's
changed files and filters (the filters are not applied again), and runs
against a copy of the earlier run's snapshot, so the same tree is tested;
the earlier run's source root must still exist. A skipped run is recorded
as skipped again, with nothing run. Output formats and exit status are
run's (see 'jerichoci run --help').`

func runRerun(ctx context.Context, c *cli, args []string) int {
	cfg := defaultExecConfig()
	cfg.fromEnv(c.env)
	fs := c.flagSet("rerun", rerunUsage)
	cfg.flags(fs)
	output := fs.String("output", "text", runOutputHelp)
	catalog := fs.String("catalog", "", catalogFlagHelp)
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "expected one RUN_ID, got %d arguments", len(pos))
	}
	if code, done := c.checkOutput(fs, *output, runOutputs...); done {
		return code
	}
	lr, code, done := c.newLocalRun(cfg, *output)
	if done {
		return code
	}
	prev, err := run.LoadRun(lr.stateRoot, pos[0])
	if err != nil {
		return c.fail(exitUsage, "%v", notFoundRun(err, lr.stateRoot, pos[0]))
	}
	id, err := rerunTargetID(prev)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	cat, err := c.loadCatalog(*catalog)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	target, err := cat.Lookup(id)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if prev.Status == model.StatusSkipped {
		return c.rerunSkipped(ctx, lr, prev, target)
	}
	plan, snapshot, err := rerunPlan(lr.stateRoot, prev, target)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	return c.runLocal(ctx, lr, plan, func(r *run.Runner) {
		// The new snapshot is a copy of the earlier run's, not of the
		// source tree as it is now; it records the run's source root.
		copySnap := r.Snapshot
		r.Snapshot = func(ctx context.Context, src, dst string, o run.SnapshotOptions) (model.SnapshotMetadata, error) {
			o.SourceRoot = src
			return copySnap(ctx, snapshot, dst, o)
		}
	})
}

// rerunTargetID is the target to run again: the recorded target id, else
// the id of the run's only job (the original's rule and message).
func rerunTargetID(prev model.RunRecord) (string, error) {
	switch {
	case prev.TargetID != nil:
		return *prev.TargetID, nil
	case len(prev.Jobs) == 1:
		return prev.Jobs[0].ID, nil
	}
	return "", fmt.Errorf("run `%s` cannot be rerun because it does not record a target id", prev.RunID)
}

// rerunMessage is the message of every rerun's record.
func rerunMessage(prev model.RunRecord) string { return "rerun of " + prev.RunID }

// rerunPlan plans the rerun of prev and returns the earlier snapshot it runs
// on: the original's checks (a snapshot that was made and still exists,
// here or under this state root), and a source root that still exists.
func rerunPlan(stateRoot string, prev model.RunRecord, target targets.Target) (run.Plan, string, error) {
	if prev.SnapshotDir == "" {
		return run.Plan{}, "", fmt.Errorf("run `%s` has no snapshot to rerun", prev.RunID)
	}
	snapshot := localPath(prev.SnapshotDir, run.NewStore(stateRoot).SnapshotDir(prev.RunID))
	if fi, err := os.Stat(snapshot); err != nil || !fi.IsDir() {
		return run.Plan{}, "", fmt.Errorf("snapshot for run `%s` no longer exists at %s", prev.RunID, prev.SnapshotDir)
	}
	if fi, err := os.Stat(prev.SourceRoot); err != nil || !fi.IsDir() {
		why := "is not a directory"
		if errors.Is(err, fs.ErrNotExist) {
			why = "no longer exists"
		} else if err != nil {
			why = err.Error()
		}
		return run.Plan{}, "", fmt.Errorf("run `%s` cannot be rerun: its source root %s %s", prev.RunID, prev.SourceRoot, why)
	}
	git := run.GitState{Head: prev.GitHead, Dirty: prev.GitDirty != nil && *prev.GitDirty, OK: true}
	plan := run.NewPlan(target, prev.SourceRoot, git, append([]string{}, prev.ChangedFiles...))
	plan.TargetDescription = rerunDescription(prev, target)
	plan.Filters = append([]string{}, prev.Filters...)
	plan.FilterMiss = false
	msg, of := rerunMessage(prev), prev.RunID
	plan.Message, plan.RerunOf = &msg, &of
	return plan, snapshot, nil
}

func rerunDescription(prev model.RunRecord, target targets.Target) string {
	if prev.TargetDescription != nil {
		return *prev.TargetDescription
	}
	return target.Description
}

// rerunSkipped records the rerun of a skipped run as skipped again, with
// nothing run, as the original does: finished when created, no jobs, the
// earlier run's changed files and filters, the message "rerun of <id>".
func (c *cli) rerunSkipped(ctx context.Context, lr localRun, prev model.RunRecord, target targets.Target) int {
	now := time.Now()
	desc, of := rerunDescription(prev, target), prev.RunID
	msg := rerunMessage(prev)
	rec := model.RunRecord{
		RunID: model.NewRunID(now, uuid.New()), Status: model.StatusSkipped, RerunOf: &of,
		TargetID: &target.ID, SourceRoot: prev.SourceRoot, GitHead: prev.GitHead, GitDirty: prev.GitDirty,
		CreatedAt: model.At(now), ChangedFiles: append([]string{}, prev.ChangedFiles...),
		Filters: append([]string{}, prev.Filters...), Message: &msg,
		PrepareTimings: []model.PrepareTimingRecord{}, Jobs: []model.JobRecord{},
	}
	if desc != "" {
		rec.TargetDescription = &desc
	}
	rec.FinishedAt = &rec.CreatedAt
	store := run.NewStore(lr.stateRoot)
	if err := store.CreateRun(rec.RunID); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if err := store.WriteRun(rec); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if lr.output == "text" || lr.output == "jsonl" {
		view := newLiveView(c.stdout, lr.output, run.Plan{})
		view.Emit(ctx, model.RunStartedEvent(&rec))
		view.Emit(ctx, model.RunFinishedEvent(rec))
		view.close()
	}
	return c.reportRun(ctx, lr.output, rec, store.RunPath(rec.RunID), false)
}
