// Package run is the run lifecycle of the original executor: run ids, the
// state layout, atomic record writes, lifecycle events, prepare nodes,
// fail-fast scheduling and gc. It drives an executor through a small
// interface and never names a concrete backend.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/model"
	"jerichoci/targets"
)

// JobExecutor runs one job. A job that ran and failed is a Result with
// status failed; an error means the infrastructure failed.
type JobExecutor interface {
	Execute(ctx context.Context, job executor.Job) (executor.Result, error)
}

// EventSink receives lifecycle events as they happen.
type EventSink interface {
	Emit(ctx context.Context, ev model.LifecycleEvent)
}

// PlannedJob is one job of a plan, in target order.
type PlannedJob struct {
	ID          string
	Description string
	TimeoutSecs uint64
	Command     model.JobCommand
	Runtime     model.RuntimeConfig
	Placement   *model.Placement
	Executor    string // model.ExecutorRemoteLinuxVM for Incus jobs
	Staged      bool
	// StagedLinux says how a staged job's payload is prepared.
	StagedLinux *targets.StagedLinux
	Writable    bool
	// SecretEnv names the worker's environment variables the job gets
	// (masked in its logs).
	SecretEnv []string
}

// Plan is what one run executes.
type Plan struct {
	TargetID          string
	TargetDescription string
	RerunOf           *string
	SourceRoot        string // absolute
	GitHead           *string
	GitDirty          bool
	ChangedFiles      []string
	Filters           []string
	// FilterMiss marks a run whose filters matched none of ChangedFiles: it
	// is recorded as skipped without running anything.
	FilterMiss bool
	// Message is recorded on the run, e.g. that change detection was unavailable.
	Message *string
	Jobs    []PlannedJob
}

// Runner executes plans and persists their records under StateRoot,
// through its Store. It holds what every run shares; what belongs to one
// run comes in RunOptions.
type Runner struct {
	StateRoot string
	Env       model.LookupEnv
	// MaxConcurrent bounds parallel jobs when every job is staged
	// (PIKACI_MAX_CONCURRENT_EXECUTES); otherwise jobs run one at a time.
	MaxConcurrent int
	// Snapshot copies the source tree into dst with the plan's profile
	// and writes its metadata; nil skips snapshots.
	Snapshot func(ctx context.Context, src, dst string, opt SnapshotOptions) (model.SnapshotMetadata, error)
	Now      func() time.Time
	NewUUID  func() uuid.UUID
	// Outputs builds staged jobs' prepared outputs; nil fails their
	// prepare nodes.
	Outputs OutputBuilder
	// HostCacheScope names the host-local cache scope of a run's
	// host-local jobs (the host-local executor's rule); nil leaves it "".
	HostCacheScope func(targetID string, hostJobIDs []string) string
	// SecretEnvAllowed says whether a job may be given the worker's
	// variable name (secret_env); nil allows every name (a local run of
	// one's own catalog). A job naming one it may not have fails.
	SecretEnvAllowed func(name string) bool
}

// RunOptions are one run's executor, listeners and identity.
type RunOptions struct {
	// Exec runs the jobs; when it is a RunnerPreparer it also checks, in
	// each Incus job's runner prepare node, that the backend can run it.
	Exec   JobExecutor
	Events EventSink // may be nil
	Log    *zap.Logger
	// JobOutput, when set, also receives each job's host log as it is
	// written (the CLI shows it live).
	JobOutput func(jobID string) io.Writer
	// RunID, when set, is used instead of a fresh id (the daemon fences runs by id).
	RunID string
	// Settle, when set, sees the final record before it is written and
	// before its run_finished is emitted, and may change it: the daemon's
	// classification decides there, so run.json is written once.
	Settle func(rec *model.RunRecord)
}

// Store is the runner's view of its state root.
func (r *Runner) Store() *Store { return NewStore(r.StateRoot) }

// MsgCancelled is the run message of a cancelled run (the original's).
const MsgCancelled = "cancelled"

// runState is one run in progress; mu guards rec and the files.
type runState struct {
	r     *Runner
	opt   RunOptions
	store *Store
	mu    sync.Mutex
	rec   model.RunRecord
	log   *zap.Logger
	// outputs is prepared-outputs.json; only the prepare phase writes it.
	outputs   model.PreparedOutputsRecord
	hostScope string
}

// Run executes plan and returns its final record. A failed run is a record
// with status failed, not an error; the error is for a record that could
// not be persisted.
func (r *Runner) Run(ctx context.Context, plan Plan, opt RunOptions) (model.RunRecord, error) {
	now := r.now()
	runID := opt.RunID
	if runID == "" {
		runID = model.NewRunID(now, r.newUUID())
	}
	st := &runState{r: r, opt: opt, store: r.Store(), log: opt.logger().With(zap.String("run_id", runID))}
	st.rec = model.RunRecord{
		RunID: runID, Status: model.StatusRunning, RerunOf: plan.RerunOf,
		TargetID: strPtr(plan.TargetID), TargetDescription: strPtr(plan.TargetDescription),
		SourceRoot: plan.SourceRoot, GitHead: plan.GitHead, CreatedAt: model.At(now),
		ChangedFiles: append([]string{}, plan.ChangedFiles...), Filters: append([]string{}, plan.Filters...),
		Message: plan.Message, PrepareTimings: []model.PrepareTimingRecord{}, Jobs: []model.JobRecord{},
	}
	if plan.GitDirty {
		st.rec.GitDirty = boolPtr(true) // the original writes null when clean, never false
	}
	if err := st.store.CreateRun(runID); err != nil {
		return st.rec, err
	}
	if plan.FilterMiss {
		st.rec.Status = model.StatusSkipped
		st.rec.FinishedAt = &st.rec.CreatedAt
		st.rec.Message = strPtr(fmt.Sprintf("skipped; no changed files matched %d filter(s)", len(plan.Filters)))
		err := st.writeRun()
		// The original emits both events for a skipped run too.
		st.emit(ctx, model.RunStartedEvent(&st.rec))
		st.emit(ctx, model.RunFinishedEvent(st.rec))
		return st.rec, err
	}
	if err := st.writeRun(); err != nil {
		return st.rec, err
	}
	ev := model.RunStartedEvent(&st.rec)
	st.emit(ctx, ev)
	st.log.Info("run started", zap.String("target", plan.TargetID), zap.Int("jobs", len(plan.Jobs)))

	if err := st.stageAndRunJobs(ctx, plan); err != nil {
		// Early failure: persisted as a failed run, returned as a record.
		st.mu.Lock()
		st.rec.Status = model.StatusFailed
		st.rec.Message = strPtr(err.Error())
		st.mu.Unlock()
		st.log.Warn("run failed before any job started", zap.Error(err))
	}
	return st.finish(ctx)
}

// stageAndRunJobs snapshots the source, prepares the jobs and runs them;
// an error is an early failure of the run (no job started).
func (st *runState) stageAndRunJobs(ctx context.Context, plan Plan) error {
	if plan.SourceRoot == "" || !filepath.IsAbs(plan.SourceRoot) {
		return fmt.Errorf("source root %q must be an absolute path", plan.SourceRoot)
	}
	if fi, err := os.Stat(plan.SourceRoot); err != nil {
		return fmt.Errorf("source root: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("source root %s is not a directory", plan.SourceRoot)
	}
	if len(plan.Jobs) == 0 {
		return fmt.Errorf("target `%s` has no jobs", plan.TargetID)
	}
	snap := st.store.SnapshotDir(st.rec.RunID)
	if st.r.Snapshot != nil {
		dirty := boolPtr(plan.GitDirty)
		if plan.GitHead == nil {
			dirty = nil
		}
		opt := SnapshotOptions{Profile: plan.SnapshotProfile(), GitHead: plan.GitHead, GitDirty: dirty, CreatedAt: st.rec.CreatedAt.Time}
		if _, err := st.r.Snapshot(ctx, plan.SourceRoot, snap, opt); err != nil {
			return fmt.Errorf("snapshot source %s: %w", plan.SourceRoot, err)
		}
		st.mu.Lock()
		st.rec.SnapshotDir = snap
		st.mu.Unlock()
	}
	// Plan the job directories: both log files exist from the start.
	jobs := make([]*jobState, len(plan.Jobs))
	for i, pj := range plan.Jobs {
		js, err := st.planJob(pj)
		if err != nil {
			closeLogs(jobs[:i])
			return err
		}
		jobs[i] = js
	}
	var hostJobs []string
	for _, js := range jobs {
		if js.plan.Runtime.Kind == model.RuntimeHostProcess {
			hostJobs = append(hostJobs, js.plan.ID)
		}
	}
	if len(hostJobs) > 0 && st.r.HostCacheScope != nil {
		st.hostScope = st.r.HostCacheScope(plan.TargetID, hostJobs)
	}
	planRec, nodes, err := st.buildPlan(plan, jobs, st.snapshotDir())
	if err != nil {
		closeLogs(jobs)
		return err
	}
	if err := st.writePlan(planRec); err != nil {
		closeLogs(jobs)
		return err
	}
	if node, err := st.prepare(ctx, jobs, nodes); err != nil {
		st.stopAfterPrepare(jobs, node, err)
		return nil
	}
	st.schedule(ctx, jobs, st.snapshotDir())
	return nil
}

func (st *runState) snapshotDir() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.rec.SnapshotDir
}

// finish sets the final status and writes the terminal record.
func (st *runState) finish(ctx context.Context) (model.RunRecord, error) {
	st.mu.Lock()
	if ctx.Err() != nil {
		// A cancelled run never passes, even when it stopped between jobs.
		st.rec.Status = model.StatusFailed
		if st.rec.Message == nil {
			st.rec.Message = strPtr(MsgCancelled)
		}
	}
	if st.rec.Status == model.StatusRunning {
		st.rec.Status = model.StatusPassed
		for _, j := range st.rec.Jobs {
			if j.Status == model.StatusFailed {
				st.rec.Status = model.StatusFailed
			}
		}
	}
	st.rec.FinishedAt = model.TimestampPtr(st.r.now())
	if st.opt.Settle != nil {
		st.opt.Settle(&st.rec)
	}
	err := st.writeRunLocked()
	final := st.rec
	st.mu.Unlock()
	st.emit(ctx, model.RunFinishedEvent(final))
	st.log.Info("run finished", zap.String("status", string(final.Status)))
	return final, err
}

func (st *runState) writeRun() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.writeRunLocked()
}

func (st *runState) writeRunLocked() error { return st.store.WriteRun(st.rec) }

// upsertJob replaces the job by id in jobs[], else appends it, then writes
// its status.json and run.json.
func (st *runState) upsertJob(j model.JobRecord) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	replaced := false
	for i := range st.rec.Jobs {
		if st.rec.Jobs[i].ID == j.ID {
			st.rec.Jobs[i], replaced = j, true
		}
	}
	if !replaced {
		st.rec.Jobs = append(st.rec.Jobs, j)
	}
	return errors.Join(st.store.WriteJob(st.rec.RunID, j), st.writeRunLocked())
}

func (st *runState) emit(ctx context.Context, ev model.LifecycleEvent) {
	if st.opt.Events != nil {
		st.opt.Events.Emit(ctx, ev)
	}
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) newUUID() uuid.UUID {
	if r.NewUUID != nil {
		return r.NewUUID()
	}
	return uuid.New()
}

func (o RunOptions) logger() *zap.Logger {
	if o.Log != nil {
		return o.Log
	}
	return zap.NewNop()
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func boolPtr(b bool) *bool { return &b }
