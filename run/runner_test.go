package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

// fakeExec scripts outcomes by job id and records concurrency.
type fakeExec struct {
	mu        sync.Mutex
	outcomes  map[string]executor.Result
	errs      map[string]error
	ran       []string
	running   int
	maxActive int
	gate      chan struct{} // when set, every job waits for one value
}

func (f *fakeExec) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	f.mu.Lock()
	f.ran = append(f.ran, job.ID)
	f.running++
	if f.running > f.maxActive {
		f.maxActive = f.running
	}
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.running--; f.mu.Unlock() }()
	if f.gate != nil {
		<-f.gate
	}
	fmt.Fprintf(job.HostLog, "[runner:stdout] hello from %s\n", job.ID)
	if err, ok := f.errs[job.ID]; ok {
		return executor.Result{}, err
	}
	if r, ok := f.outcomes[job.ID]; ok {
		return r, nil
	}
	return executor.Result{Status: model.StatusPassed, ExitCode: new(int32), Message: "test passed"}, nil
}

type sink struct {
	mu  sync.Mutex
	evs []model.LifecycleEvent
}

func (s *sink) Emit(_ context.Context, ev model.LifecycleEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
}

func (s *sink) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.evs {
		n := e.Event
		if e.Job != nil {
			n += ":" + e.Job.ID
		}
		out = append(out, n)
	}
	return out
}

func incusJob(id string) PlannedJob {
	p := model.PlacementRemoteSSH
	return PlannedJob{ID: id, Description: "job " + id, TimeoutSecs: 60, Command: model.Shell("true"),
		Runtime: model.IncusRuntimeFor(model.RolePikaciRunner), Placement: &p, Executor: model.ExecutorRemoteLinuxVM}
}

// testRunner is a Runner with the options of every run of a test.
type testRunner struct {
	*Runner
	opt RunOptions
}

func (r testRunner) Run(ctx context.Context, p Plan) (model.RunRecord, error) {
	return r.Runner.Run(ctx, p, r.opt)
}

func newRunner(t *testing.T, ex JobExecutor, env map[string]string) (testRunner, *sink) {
	t.Helper()
	s := &sink{}
	clock := time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)
	var mu sync.Mutex
	return testRunner{Runner: &Runner{
		StateRoot: t.TempDir(), MaxConcurrent: 2,
		Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			clock = clock.Add(time.Millisecond)
			return clock
		},
		NewUUID: func() uuid.UUID { return uuid.MustParse("3f9c2a1b-0000-4000-8000-000000000000") },
	}, opt: RunOptions{Exec: ex, Events: s}}, s
}

func plan(t *testing.T, jobs ...PlannedJob) Plan {
	return Plan{TargetID: "demo", TargetDescription: "Demo target", SourceRoot: t.TempDir(), Jobs: jobs}
}

func readJSON[T any](t *testing.T, path string) T {
	t.Helper()
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func TestRunPassed(t *testing.T) {
	r, s := newRunner(t, &fakeExec{}, nil)
	rec, err := r.Run(t.Context(), plan(t, incusJob("a"), incusJob("b")))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusPassed || rec.FinishedAt == nil || len(rec.Jobs) != 2 {
		t.Fatalf("record = %+v", rec)
	}
	if rec.RunID != "20261125T101500Z-3f9c2a1b" {
		t.Errorf("run id = %s", rec.RunID)
	}
	onDisk := readJSON[model.RunRecord](t, filepath.Join(r.StateRoot, "runs", rec.RunID, "run.json"))
	if onDisk.Status != model.StatusPassed || len(onDisk.Jobs) != 2 {
		t.Errorf("run.json = %+v", onDisk)
	}
	for _, j := range rec.Jobs {
		st := readJSON[model.JobRecord](t, filepath.Join(r.StateRoot, "runs", rec.RunID, "jobs", j.ID, "status.json"))
		if st.Status != model.StatusPassed || *st.Message != "test passed" || *st.PlanNodeID != "execute-"+j.ID {
			t.Errorf("status.json of %s = %+v", j.ID, st)
		}
		if _, err := os.Stat(j.GuestLogPath); err != nil {
			t.Errorf("guest log: %v", err)
		}
		if b, _ := os.ReadFile(j.HostLogPath); !strings.Contains(string(b), "hello from "+j.ID) {
			t.Errorf("host log of %s = %q", j.ID, b)
		}
	}
	if len(rec.PrepareTimings) != 2 || rec.PrepareTimings[0].NodeID != "prepare-a-runner" {
		t.Errorf("prepare timings = %+v", rec.PrepareTimings)
	}
	want := "run_started job_started:a job_finished:a job_started:b job_finished:b run_finished"
	if got := strings.Join(s.names(), " "); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestRunFailFastSkipsLaterJobs(t *testing.T) {
	ex := &fakeExec{outcomes: map[string]executor.Result{
		"b": {Status: model.StatusFailed, ExitCode: ptr(int32(3)), Message: "test command exited with 3"},
	}}
	r, s := newRunner(t, ex, nil)
	rec, err := r.Run(t.Context(), plan(t, incusJob("a"), incusJob("b"), incusJob("c"), incusJob("d")))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusFailed {
		t.Errorf("status = %s", rec.Status)
	}
	got := map[string]model.JobRecord{}
	for _, j := range rec.Jobs {
		got[j.ID] = j
	}
	if got["b"].Status != model.StatusFailed || *got["b"].ExitCode != 3 {
		t.Errorf("b = %+v", got["b"])
	}
	for _, id := range []string{"c", "d"} {
		j := got[id]
		if j.Status != model.StatusSkipped || *j.Message != "not run because an earlier execute node failed" ||
			j.ExitCode != nil || j.FinishedAt == nil || j.StartedAt != *j.FinishedAt {
			t.Errorf("%s = %+v", id, j)
		}
	}
	if strings.Join(ex.ran, ",") != "a,b" {
		t.Errorf("executed %v, want a,b", ex.ran)
	}
	want := "run_started job_started:a job_finished:a job_started:b job_finished:b run_finished"
	if got := strings.Join(s.names(), " "); got != want {
		t.Errorf("events = %s, want %s (skipped jobs emit nothing)", got, want)
	}
}

func TestRunPrepareFailureInvalidEnvRole(t *testing.T) {
	r, s := newRunner(t, &fakeExec{}, map[string]string{model.EnvGuestRole: "not-a-role"})
	rec, err := r.Run(t.Context(), plan(t, incusJob("a"), incusJob("b")))
	if err != nil {
		t.Fatal(err)
	}
	envErr := "PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE must be one of `managed-openclaw` or `pikaci-runner`, got \"not-a-role\""
	if rec.Status != model.StatusFailed || len(rec.Jobs) != 2 {
		t.Fatalf("record = %+v", rec)
	}
	if m := *rec.Jobs[0].Message; m != "prepare node `prepare-a-runner` failed before execute: "+envErr {
		t.Errorf("a message = %s", m)
	}
	if rec.Jobs[1].Status != model.StatusSkipped ||
		*rec.Jobs[1].Message != "not run because prepare phase stopped after `prepare-a-runner` failed: "+envErr {
		t.Errorf("b = %+v / %s", rec.Jobs[1], *rec.Jobs[1].Message)
	}
	if b, _ := os.ReadFile(rec.Jobs[0].HostLogPath); !strings.Contains(string(b), "[pikaci] prepare node `prepare-a-runner` failed") {
		t.Errorf("host log = %q", b)
	}
	if got := strings.Join(s.names(), " "); got != "run_started run_finished" {
		t.Errorf("events = %s", got)
	}
}

func TestRunEarlyFailureIsPersisted(t *testing.T) {
	r, s := newRunner(t, &fakeExec{}, nil)
	p := plan(t, incusJob("a"))
	p.SourceRoot = "/nonexistent/source"
	rec, err := r.Run(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusFailed || len(rec.Jobs) != 0 || rec.Message == nil ||
		!strings.Contains(*rec.Message, "source root: stat /nonexistent/source") {
		t.Fatalf("record = %+v", rec)
	}
	onDisk := readJSON[model.RunRecord](t, filepath.Join(r.StateRoot, "runs", rec.RunID, "run.json"))
	if onDisk.Status != model.StatusFailed || onDisk.FinishedAt == nil {
		t.Errorf("run.json = %+v", onDisk)
	}
	if got := strings.Join(s.names(), " "); got != "run_started run_finished" {
		t.Errorf("events = %s", got)
	}
}

// closeCounter is a live log copy that counts its closes.
type closeCounter struct {
	mu     sync.Mutex
	closed map[string]int
}

type closeOne struct {
	c  *closeCounter
	id string
}

func (w closeOne) Write(p []byte) (int, error) { return len(p), nil }
func (w closeOne) Close() error {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	w.c.closed[w.id]++
	return nil
}

// An early failure after the jobs are planned (here a plan that cannot be
// built) still closes their host logs and live copies.
func TestRunEarlyFailureClosesJobLogs(t *testing.T) {
	r, _ := newRunner(t, &fakeExec{}, nil)
	cc := &closeCounter{closed: map[string]int{}}
	r.opt.JobOutput = func(id string) io.Writer { return closeOne{cc, id} }
	host := PlannedJob{ID: "h", Description: "host job", TimeoutSecs: 60, Command: model.Shell("echo"),
		Runtime: model.HostProcessRuntime()}
	rec, err := r.Run(t.Context(), plan(t, incusJob("a"), host))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusFailed || rec.Message == nil ||
		*rec.Message != "host-local job `h` must use GuestCommand::HostShellCommand" {
		t.Fatalf("record = %+v", rec)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed["a"] != 1 || cc.closed["h"] != 1 {
		t.Errorf("closed = %v", cc.closed)
	}
}

func TestRunFilterMissIsSkipped(t *testing.T) {
	r, s := newRunner(t, &fakeExec{}, nil)
	p := plan(t, incusJob("a"))
	p.Filters, p.FilterMiss = []string{"rust/**", "justfile", "docs/**"}, true
	rec, err := r.Run(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusSkipped || *rec.Message != "skipped; no changed files matched 3 filter(s)" ||
		rec.FinishedAt == nil || *rec.FinishedAt != rec.CreatedAt || len(rec.Jobs) != 0 {
		t.Errorf("record = %+v", rec)
	}
	// The original streams both events for a skipped run (jsonl shows it).
	if got := strings.Join(s.names(), " "); got != "run_started run_finished" {
		t.Errorf("events = %s", got)
	}
}

func TestRunInfrastructureErrorKeepsExecution(t *testing.T) {
	exe := &model.RemoteLinuxVMExecutionRecord{Backend: model.BackendIncus, Phases: []model.PhaseRecord{{Phase: model.PhasePrepareDirectories}}}
	ex := &fakeExec{errs: map[string]error{"a": &executor.Error{Err: errors.New("incus: create instance \"pikaci-x\": boom"), Execution: exe}}}
	r, _ := newRunner(t, ex, nil)
	rec, err := r.Run(t.Context(), plan(t, incusJob("a"), incusJob("b")))
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Jobs[0]
	if a.Status != model.StatusFailed || *a.Message != "incus: create instance \"pikaci-x\": boom" || a.ExitCode != nil ||
		a.RemoteLinuxVMExecution == nil || len(a.RemoteLinuxVMExecution.Phases) != 1 {
		t.Errorf("a = %+v", a)
	}
	if rec.Jobs[1].Status != model.StatusSkipped {
		t.Errorf("b = %+v", rec.Jobs[1])
	}
}

func TestRunConcurrency(t *testing.T) {
	tests := []struct {
		name   string
		staged bool
		max    int
		want   int
	}{
		{"unstaged jobs run one at a time", false, 4, 1},
		{"staged jobs use PIKACI_MAX_CONCURRENT_EXECUTES", true, 2, 2},
		{"staged jobs with 3 slots", true, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex := &fakeExec{gate: make(chan struct{})}
			r, _ := newRunner(t, ex, nil)
			r.MaxConcurrent = tc.max
			var jobs []PlannedJob
			for i := range 4 {
				j := incusJob(fmt.Sprintf("j%d", i))
				j.Staged = tc.staged
				jobs = append(jobs, j)
			}
			done := make(chan model.RunRecord)
			go func() { rec, _ := r.Run(t.Context(), plan(t, jobs...)); done <- rec }()
			// Release the jobs one at a time once as many as allowed are waiting.
			for range 4 {
				waitFor(t, func() bool {
					ex.mu.Lock()
					defer ex.mu.Unlock()
					return ex.running == min(tc.want, 4-len(ex.ran)+ex.running)
				})
				ex.gate <- struct{}{}
			}
			rec := <-done
			if rec.Status != model.StatusPassed || ex.maxActive != tc.want {
				t.Errorf("status %s, max parallel %d, want %d", rec.Status, ex.maxActive, tc.want)
			}
		})
	}
}

// Jobs that run side by side are still listed in target order, in jobs[]
// and in the job_started events: each job is recorded as running when it
// is taken, before its goroutine starts (docs/CONTRACTS.md). Twenty
// rounds of eight parallel jobs: goroutines that recorded themselves
// listed the jobs in the order the scheduler happened to run them.
func TestRunJobsListedInTargetOrder(t *testing.T) {
	var ids []string
	var jobs []PlannedJob
	for i := range 8 {
		j := incusJob(fmt.Sprintf("j%d", i))
		j.Staged = true
		jobs, ids = append(jobs, j), append(ids, j.ID)
	}
	for round := range 20 {
		r, s := newRunner(t, &fakeExec{}, nil)
		r.MaxConcurrent = len(jobs)
		rec, err := r.Run(t.Context(), plan(t, jobs...))
		if err != nil || rec.Status != model.StatusPassed {
			t.Fatalf("round %d: %v %s", round, err, rec.Status)
		}
		var got, started []string
		for _, j := range rec.Jobs {
			got = append(got, j.ID)
		}
		for _, n := range s.names() {
			if id, ok := strings.CutPrefix(n, "job_started:"); ok {
				started = append(started, id)
			}
		}
		if !slices.Equal(got, ids) || !slices.Equal(started, ids) {
			t.Fatalf("round %d: jobs[] %v, job_started %v; want target order %v", round, got, started, ids)
		}
	}
}

// waitFor polls cond; it fails the test after a generous bound instead of
// asserting on timing.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 10000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func TestGCAndList(t *testing.T) {
	root := t.TempDir()
	for _, id := range []string{"20260101T000001Z-00000001", "20260101T000002Z-00000002", "20260101T000003Z-00000003"} {
		dir := filepath.Join(root, "runs", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if id != "20260101T000002Z-00000002" {
			rec := model.RunRecord{RunID: id, Status: model.StatusPassed, SourceRoot: "/s",
				CreatedAt: model.At(time.Date(2026, 1, 1, 0, 0, int(id[14]-'0'), 0, time.UTC))}
			b, _ := model.EncodeFile(rec)
			if err := atomicfile.WriteFile(filepath.Join(dir, "run.json"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	runs, err := ListRuns(root)
	if err != nil || len(runs) != 2 || runs[0].RunID != "20260101T000003Z-00000003" {
		t.Fatalf("ListRuns = %v, %v", runs, err)
	}
	removed, err := GC(root, 1)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, ",") != "20260101T000002Z-00000002,20260101T000001Z-00000001" {
		t.Errorf("removed = %v", removed)
	}
	if _, err := GC(root, -1); err == nil {
		t.Error("GC(-1) succeeded")
	}
}

func ptr[T any](v T) *T { return &v }

// blockingExec runs until its context ends, like a job cut short.
type blockingExec struct{ started chan struct{} }

func (b blockingExec) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	close(b.started)
	<-ctx.Done()
	return executor.Result{}, &executor.Error{Err: fmt.Errorf("run guest runner: %w", ctx.Err())}
}

func TestRunCancelled(t *testing.T) {
	ex := blockingExec{started: make(chan struct{})}
	r, s := newRunner(t, ex, nil)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-ex.started; cancel() }()
	rec, err := r.Run(ctx, plan(t, incusJob("a"), incusJob("b")))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusFailed || rec.Message == nil || *rec.Message != "cancelled" {
		t.Fatalf("record = %+v", rec)
	}
	if m := *rec.Jobs[0].Message; rec.Jobs[0].Status != model.StatusFailed || m != "cancelled" {
		t.Errorf("a = %s %q", rec.Jobs[0].Status, m)
	}
	if m := *rec.Jobs[1].Message; rec.Jobs[1].Status != model.StatusSkipped || m != "not run because the run was cancelled" {
		t.Errorf("b = %s %q", rec.Jobs[1].Status, m)
	}
	if b, _ := os.ReadFile(rec.Jobs[0].HostLogPath); !strings.Contains(string(b), "[pikaci] cancelled: run guest runner: context canceled") {
		t.Errorf("host log keeps no detail: %q", b)
	}
	if got := strings.Join(s.names(), " "); got != "run_started job_started:a job_finished:a run_finished" {
		t.Errorf("events = %s", got)
	}
}

// cancelAfterFirst cancels the run when its first job has passed, so the
// run stops between jobs with nothing failed.
type cancelAfterFirst struct{ cancel context.CancelFunc }

func (c cancelAfterFirst) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	c.cancel()
	return executor.Result{Status: model.StatusPassed, ExitCode: new(int32), Message: "test passed"}, nil
}

func TestRunCancelledBetweenJobsIsFailed(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r, _ := newRunner(t, cancelAfterFirst{cancel}, nil)
	rec, err := r.Run(ctx, plan(t, incusJob("a"), incusJob("b")))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusFailed || *rec.Message != "cancelled" || rec.Jobs[0].Status != model.StatusPassed ||
		*rec.Jobs[1].Message != "not run because the run was cancelled" {
		t.Errorf("record = %+v, jobs %+v", rec, rec.Jobs)
	}
}
