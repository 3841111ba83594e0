package run

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"jerichoci/executor"
)

// InfraWatch is a JobExecutor that notes the infrastructure failures of the
// jobs it runs (an error from Execute, see JobExecutor), so that the caller
// can tell a failed run from a broken one once the run is over. It is safe
// for jobs running at the same time.
type InfraWatch struct {
	JobExecutor
	mu     sync.Mutex
	failed bool
	first  error
}

func (w *InfraWatch) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	res, err := w.JobExecutor.Execute(ctx, job)
	var xe *executor.Error
	w.note(ctx, job.ID, err, errors.As(err, &xe))
	return res, err
}

// note records a job's failed Execute or runner check: any error marks the
// watch failed; an infrastructure one (infra) returned while ctx was not
// cancelled is kept as the first error, when it is the first.
func (w *InfraWatch) note(ctx context.Context, jobID string, err error, infra bool) {
	if err == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed = true
	if infra && ctx.Err() == nil && w.first == nil {
		w.first = fmt.Errorf("job %s: %w", jobID, err)
	}
}

// Err returns the first executor.Error of a job, as "job ID: error". An
// error returned while the job's context was cancelled is not one: the job
// was stopped, the infrastructure did not fail. Nil when there is none.
func (w *InfraWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

// Failed reports whether any job's Execute returned an error: of any kind,
// cancelled or not. It is broader than Err, which it includes.
func (w *InfraWatch) Failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// PrepareRunner passes the runner check to the executor it watches, when
// that executor has one. A failed check (no image, no project, incusd
// unreachable) is an infrastructure failure, as it was when the executor
// found it.
func (w *InfraWatch) PrepareRunner(ctx context.Context, job executor.Job) error {
	p, ok := w.JobExecutor.(RunnerPreparer)
	if !ok {
		return nil
	}
	err := p.PrepareRunner(ctx, job)
	w.note(ctx, job.ID, err, true)
	return err
}
