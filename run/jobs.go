package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/internal/mask"
	"jerichoci/internal/termsafe"
	"jerichoci/model"
)

// Exact messages of the original (docs/CONTRACTS.md, "Exact messages").
const msgSkippedAfterFailure = "not run because an earlier execute node failed"

// msgSkippedCancelled marks the jobs a cancelled run never started.
const msgSkippedCancelled = "not run because the run was cancelled"

type jobState struct {
	plan     PlannedJob
	dir      string
	hostLog  *lockedFile
	image    model.IncusImage
	prepMS   uint64 // sum of the prepare nodes this job depends on
	template model.JobRecord
	// dependsOn are the prepare nodes of the job's execute node.
	dependsOn []string
	payloads  []executor.StagedPayload
}

// lockedFile is an append-only log shared by goroutines. Each write is
// masked whole, then made safe for a terminal (internal/termsafe), before
// it reaches the file or the live copy: writers send whole lines, and the
// executors mask their streams before cutting them into lines, so no value
// is split across two writes here. Masking comes first, so a secret holding
// a control byte is still found. artifacts/guest.log keeps the raw bytes.
type lockedFile struct {
	mu   sync.Mutex
	f    *os.File
	tee  io.Writer     // optional live copy
	mask *mask.Secrets // the job's secret values, set before it runs
	safe termsafe.Stream
	buf  []byte // the safe form of the current write
}

func (l *lockedFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if err := l.writeSafe(l.safe.Append(l.buf[:0], l.mask.Bytes(p))); err != nil {
		return 0, err
	}
	return n, nil
}

// writeSafe writes b, made safe, to the live copy and the file. The
// caller holds l.mu.
func (l *lockedFile) writeSafe(b []byte) error {
	if cap(b) <= 64<<10 {
		l.buf = b[:0]
	} else {
		l.buf = nil
	}
	if len(b) == 0 {
		return nil
	}
	if l.tee != nil {
		_, _ = l.tee.Write(b) // a slow or broken viewer never fails the job
	}
	_, err := l.f.Write(b)
	return err
}

func (l *lockedFile) setMask(s *mask.Secrets) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mask = s
}

// Close closes the file, and the live copy when it is an io.Closer (so
// it can send what it holds).
func (l *lockedFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	werr := l.writeSafe(l.safe.Flush(l.buf[:0])) // a cut rune at the very end
	if c, ok := l.tee.(io.Closer); ok {
		_ = c.Close()
	}
	return errors.Join(werr, l.f.Close())
}

func (l *lockedFile) line(format string, a ...any) {
	fmt.Fprintf(l, "[pikaci] "+format+"\n", a...)
}

func (st *runState) planJob(pj PlannedJob) (*jobState, error) {
	runID := st.rec.RunID
	if err := st.store.CreateJob(runID, pj.ID); err != nil {
		return nil, fmt.Errorf("plan job %s: %w", pj.ID, err)
	}
	dir := st.store.JobDir(runID, pj.ID)
	hostLog, guestLog := st.store.HostLogPath(runID, pj.ID), st.store.GuestLogPath(runID, pj.ID)
	f, err := os.OpenFile(hostLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("plan job %s: %w", pj.ID, err)
	}
	if g, err := os.OpenFile(guestLog, os.O_CREATE|os.O_WRONLY, 0o644); err != nil {
		f.Close()
		return nil, fmt.Errorf("plan job %s: %w", pj.ID, err)
	} else {
		g.Close()
	}
	exec := pj.Executor
	if exec == "" {
		exec = model.ExecutorHostLocal
		if pj.Runtime.IsIncus() {
			exec = model.ExecutorRemoteLinuxVM
		}
	}
	rec := model.JobRecord{
		ID: pj.ID, Description: pj.Description, Executor: exec, Placement: pj.Placement,
		PlanNodeID: strPtr("execute-" + pj.ID), TimeoutSecs: pj.TimeoutSecs,
		HostLogPath: hostLog, GuestLogPath: guestLog,
	}
	if pj.Runtime.Kind != "" {
		k := pj.Runtime.Kind
		rec.Runtime = &k
	}
	lf := &lockedFile{f: f}
	if st.opt.JobOutput != nil {
		lf.tee = st.opt.JobOutput(pj.ID)
	}
	return &jobState{plan: pj, dir: dir, hostLog: lf, template: rec}, nil
}

// closeLogs closes the host logs of jobs that will never run (and so
// their live copies), when the run fails before any of them starts.
func closeLogs(jobs []*jobState) {
	for _, js := range jobs {
		js.hostLog.Close()
	}
}

func (st *runState) recordPrepare(node string, start time.Time) uint64 {
	end := st.r.now()
	d := uint64(end.Sub(start).Milliseconds())
	st.mu.Lock()
	st.rec.PrepareTimings = append(st.rec.PrepareTimings, model.PrepareTimingRecord{
		NodeID: node, StartedAt: model.At(start), FinishedAt: model.At(end), DurationMS: d})
	st.mu.Unlock()
	return d
}

// schedule runs the jobs in target order with fail-fast: the first failed
// job stops new scheduling, running jobs are awaited, pending ones skipped.
func (st *runState) schedule(ctx context.Context, jobs []*jobState, snapshot string) {
	parallel := 1
	allStaged := true
	for _, js := range jobs {
		allStaged = allStaged && js.plan.Staged
	}
	if allStaged {
		parallel = st.r.MaxConcurrent
		if parallel <= 0 {
			parallel = 2
		}
	}
	var (
		wg      sync.WaitGroup
		slots   = make(chan struct{}, parallel)
		stopped = make(chan struct{})
		once    sync.Once
	)
	stop := func() {
		once.Do(func() {
			close(stopped)
			st.mu.Lock()
			st.rec.Status = model.StatusFailed // turns failed at once; finished_at stays null
			st.mu.Unlock()
			if err := st.writeRun(); err != nil {
				st.log.Error("write run record", zap.Error(err))
			}
		})
	}
	next := 0
	for ; next < len(jobs); next++ {
		select {
		case slots <- struct{}{}:
		case <-stopped:
		}
		if isClosed(stopped) || ctx.Err() != nil {
			break
		}
		js := jobs[next]
		// The running record is written here, in target order, so jobs[]
		// lists the jobs as they were taken, however the goroutines are
		// scheduled (docs/CONTRACTS.md, "Jobs run in target order").
		rec := st.startJob(ctx, js)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if st.runJob(ctx, js, rec, snapshot) == model.StatusFailed {
				stop()
			}
		}()
	}
	wg.Wait()
	now := model.At(st.r.now())
	for _, js := range jobs[next:] {
		rec := js.template
		rec.Status, rec.StartedAt, rec.FinishedAt = model.StatusSkipped, now, &now
		msg := msgSkippedAfterFailure
		if ctx.Err() != nil {
			msg = msgSkippedCancelled
		}
		rec.Message = strPtr(msg)
		js.hostLog.line("%s", msg)
		js.hostLog.Close()
		if err := st.upsertJob(rec); err != nil {
			st.log.Error("write job record", zap.String("job", js.plan.ID), zap.Error(err))
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// startJob records a job as running (status.json, jobs[], run.json) and
// emits job_started; it returns the running record.
func (st *runState) startJob(ctx context.Context, js *jobState) model.JobRecord {
	log := st.log.With(zap.String("job", js.plan.ID))
	rec := js.template
	rec.Status, rec.StartedAt = model.StatusRunning, model.At(st.r.now())
	rec.PreExecutionPrepareDurationMS = nonZero(js.prepMS)
	if err := st.upsertJob(rec); err != nil {
		log.Error("write job record", zap.Error(err))
	}
	st.emit(ctx, model.JobStartedEvent(st.rec.RunID, rec))
	log.Info("job started")
	return rec
}

// runJob executes a started job and records its end; it returns the final
// status.
func (st *runState) runJob(ctx context.Context, js *jobState, rec model.JobRecord, snapshot string) model.RunStatus {
	defer js.hostLog.Close()
	log := st.log.With(zap.String("job", js.plan.ID))
	job := st.executorJob(js, snapshot)
	secrets, problem := st.r.secretEnv(js.plan)
	job.SecretEnv, job.Mask = secrets, maskOf(secrets)
	js.hostLog.setMask(job.Mask)
	var (
		res executor.Result
		err error
	)
	if problem == "" {
		res, err = st.opt.Exec.Execute(ctx, job)
	}
	rec.FinishedAt = model.TimestampPtr(st.r.now())
	switch {
	case problem != "":
		rec.Status, rec.Message = model.StatusFailed, strPtr(problem)
		js.hostLog.line("%s", problem)
		log.Warn("job not run", zap.String("reason", problem))
	case err != nil && ctx.Err() != nil:
		// Cancelled (a cancel request, or the CLI interrupted): the job's
		// message is the daemon's word for it; the detail goes to host.log.
		rec.Status, rec.Message = model.StatusFailed, strPtr(MsgCancelled)
		rec.RemoteLinuxVMExecution = executor.ExecutionOf(err)
		js.hostLog.line("cancelled: %v", err)
		log.Info("job cancelled", zap.Error(err))
	case err != nil:
		rec.Status = model.StatusFailed
		rec.Message = strPtr(err.Error())
		rec.RemoteLinuxVMExecution = executor.ExecutionOf(err)
		js.hostLog.line("%v", err)
		log.Warn("job failed on infrastructure", zap.Error(err))
	default:
		rec.Status, rec.ExitCode, rec.Message = res.Status, res.ExitCode, strPtr(res.Message)
		rec.RemoteLinuxVMExecution = res.Execution
		log.Info("job finished", zap.String("status", string(res.Status)))
	}
	if rec.Message != nil {
		rec.Message = strPtr(job.Mask.String(*rec.Message))
	}
	if err := st.upsertJob(rec); err != nil {
		log.Error("write job record", zap.Error(err))
	}
	st.emit(ctx, model.JobFinishedEvent(st.rec.RunID, rec))
	return rec.Status
}

// secretEnv looks up the job's secret_env in the worker's environment. It
// returns the values, or why the job cannot have them (a name this worker
// may not pass, or one it does not have): the job then fails unrun.
func (r *Runner) secretEnv(pj PlannedJob) (map[string]string, string) {
	if len(pj.SecretEnv) == 0 {
		return nil, ""
	}
	vals := make(map[string]string, len(pj.SecretEnv))
	for _, name := range pj.SecretEnv {
		if r.SecretEnvAllowed != nil && !r.SecretEnvAllowed(name) {
			return nil, fmt.Sprintf("secret_env `%s` is not one this worker passes to jobs (serve --secret-env lists those)", name)
		}
		v, ok := r.env()(name)
		if !ok {
			return nil, fmt.Sprintf("secret_env `%s` is not set in the worker's environment", name)
		}
		vals[name] = v
	}
	return vals, ""
}

func maskOf(vals map[string]string) *mask.Secrets {
	if len(vals) == 0 {
		return nil
	}
	return mask.New(slices.Collect(maps.Values(vals))...)
}

func (r *Runner) env() model.LookupEnv {
	if r.Env != nil {
		return r.Env
	}
	return model.OSEnv
}

func nonZero(ms uint64) *uint64 {
	if ms == 0 {
		return nil
	}
	return &ms
}

// executorJob is what the executor gets to run js.
func (st *runState) executorJob(js *jobState, snapshot string) executor.Job {
	return executor.Job{
		RunID: st.rec.RunID, ID: js.plan.ID, Description: js.plan.Description, TimeoutSecs: js.plan.TimeoutSecs,
		Command: js.plan.Command, Runtime: js.plan.Runtime, Writable: js.plan.Writable, Image: js.image,
		SnapshotDir: snapshot, JobDir: js.dir, HostLog: js.hostLog,
		StagedPayloads: js.payloads, HostCacheScope: st.hostScope,
	}
}
