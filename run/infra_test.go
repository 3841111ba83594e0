package run

import (
	"context"
	"errors"
	"sync"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

// execFunc is a JobExecutor made of a function.
type execFunc func(ctx context.Context, job executor.Job) (executor.Result, error)

func (f execFunc) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	return f(ctx, job)
}

// TestInfraWatch runs jobs through an InfraWatch; each job returns the
// error named by its id, its context cancelled when the id says so.
func TestInfraWatch(t *testing.T) {
	boom := &executor.Error{Err: errors.New("boom")}
	errs := map[string]error{
		"plain":         errors.New("no backend"), // not an executor.Error (the CLI's broken backend)
		"infra":         boom,
		"infra2":        &executor.Error{Err: errors.New("second")},
		"cancelled":     &executor.Error{Err: context.Canceled},
		"wrapped-infra": errors.Join(errors.New("wrapped"), boom),
	}
	tests := []struct {
		name    string
		jobs    []string
		wantErr string // "" = nil
		failed  bool
	}{
		{name: "all passed", jobs: []string{"ok", "ok"}},
		{name: "plain error", jobs: []string{"ok", "plain"}, failed: true},
		{name: "infra", jobs: []string{"plain", "infra", "infra2"}, wantErr: "job infra: boom", failed: true},
		{name: "wrapped infra", jobs: []string{"wrapped-infra"}, wantErr: "job wrapped-infra: wrapped\nboom", failed: true},
		{name: "cancelled is no infra error", jobs: []string{"cancelled"}, failed: true},
		{name: "first after a cancelled one", jobs: []string{"cancelled", "infra2", "infra"}, wantErr: "job infra2: second", failed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			passed := executor.Result{Status: model.StatusPassed}
			w := &InfraWatch{JobExecutor: execFunc(func(_ context.Context, job executor.Job) (executor.Result, error) {
				if err, ok := errs[job.ID]; ok {
					return executor.Result{}, err
				}
				return passed, nil
			})}
			for _, id := range tc.jobs {
				ctx, cancel := context.WithCancel(t.Context())
				if id == "cancelled" {
					cancel()
				}
				res, err := w.Execute(ctx, executor.Job{ID: id})
				cancel()
				if !errors.Is(err, errs[id]) || (err == nil && res.Status != model.StatusPassed) {
					t.Fatalf("Execute(%s) = %+v, %v; want the executor's answer unchanged", id, res, err)
				}
			}
			got := w.Err()
			if (got == nil) != (tc.wantErr == "") || (got != nil && got.Error() != tc.wantErr) {
				t.Errorf("Err() = %v, want %q", got, tc.wantErr)
			}
			if got != nil && !errors.As(got, new(*executor.Error)) {
				t.Errorf("Err() = %v does not wrap the executor.Error", got)
			}
			if w.Failed() != tc.failed {
				t.Errorf("Failed() = %v, want %v", w.Failed(), tc.failed)
			}
		})
	}
}

// TestInfraWatchConcurrent notes the errors of jobs running at once (run
// with -race).
func TestInfraWatchConcurrent(t *testing.T) {
	w := &InfraWatch{JobExecutor: execFunc(func(context.Context, executor.Job) (executor.Result, error) {
		return executor.Result{}, &executor.Error{Err: errors.New("down")}
	})}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			w.Execute(t.Context(), executor.Job{ID: "j"}) //nolint:errcheck // noted by w
			_, _ = w.Err(), w.Failed()
		})
	}
	wg.Wait()
	if err := w.Err(); err == nil || err.Error() != "job j: down" || !w.Failed() {
		t.Fatalf("Err() = %v, Failed() = %v", err, w.Failed())
	}
}

type failingRunners struct{ fakeExecNoop }

type fakeExecNoop struct{}

func (fakeExecNoop) Execute(context.Context, executor.Job) (executor.Result, error) {
	return executor.Result{}, nil
}

func (failingRunners) PrepareRunner(context.Context, executor.Job) error {
	return errors.New("image `x` is not available")
}

func TestInfraWatchCountsFailedRunnerChecks(t *testing.T) {
	w := &InfraWatch{JobExecutor: failingRunners{}}
	if err := w.PrepareRunner(t.Context(), executor.Job{ID: "j"}); err == nil {
		t.Fatal("the check's error was lost")
	}
	if !w.Failed() || w.Err() == nil || w.Err().Error() != "job j: image `x` is not available" {
		t.Errorf("Failed %v, Err %v", w.Failed(), w.Err())
	}
	quiet := &InfraWatch{JobExecutor: fakeExecNoop{}}
	if err := quiet.PrepareRunner(t.Context(), executor.Job{ID: "j"}); err != nil || quiet.Failed() {
		t.Errorf("an executor without a check: %v, failed %v", err, quiet.Failed())
	}
}
