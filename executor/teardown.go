package executor

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/internal/backoff"
)

// Teardowns deletes instances after their job's result is in, in the
// background, so that stopping an instance (about a second for a busybox
// container, longer for a VM) is not part of a job's time. Each teardown is
// bounded by the executor's CleanupTimeout per try, retried with a doubling
// pause, and counted. One that still fails leaves the instance
// quarantined: logged, counted, carrying its fleet and owner keys, for the
// daemon's reaper, which deletes instances whose job is over. When Wait
// gives up (its ctx ends: the daemon exits), the pauses between tries end
// there: those teardowns stop trying and are quarantined. The zero value
// is ready to use.
type Teardowns struct {
	Log *zap.Logger
	// Tries is how many times a teardown is tried (default 3); Pause the
	// first pause between tries (default 1s, doubling).
	Tries int
	Pause time.Duration

	wg      sync.WaitGroup
	mu      sync.Mutex
	pauses  context.Context // ends when Wait gives up; nil: not made yet
	stop    context.CancelFunc
	pending int
	done    uint64
	failed  uint64
}

// TeardownStats counts teardowns: running now, done, and given up
// (quarantined instances).
type TeardownStats struct {
	Pending int
	Done    uint64
	Failed  uint64
}

// Go runs teardown for instance in the background: teardown gets a
// context that ends when the try's timeout does, never the job's.
func (t *Teardowns) Go(instance string, timeout time.Duration, teardown func(ctx context.Context) error) {
	t.mu.Lock()
	t.pending++
	if t.pauses == nil {
		t.pauses, t.stop = context.WithCancel(context.Background())
	}
	pauses := t.pauses
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		err := t.try(pauses, instance, timeout, teardown)
		t.mu.Lock()
		defer t.mu.Unlock()
		t.pending--
		if err != nil {
			t.failed++
			t.logger().Error("instance quarantined: teardown failed, left for the reaper", zap.String("instance", instance), zap.Error(err))
			return
		}
		t.done++
	}()
}

// try runs teardown up to Tries times with doubling pauses between, which
// end with pauses.
func (t *Teardowns) try(pauses context.Context, instance string, timeout time.Duration, teardown func(ctx context.Context) error) error {
	tries, pause := t.Tries, backoff.Backoff{First: t.Pause}
	if tries <= 0 {
		tries = 3
	}
	if pause.First <= 0 {
		pause.First = time.Second
	}
	var err error
	for i := 0; i < tries; i++ {
		if i > 0 && pause.Wait(pauses) != nil {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err = teardown(ctx)
		cancel()
		if err == nil {
			return nil
		}
		t.logger().Warn("instance teardown failed; trying again", zap.String("instance", instance), zap.Int("try", i+1), zap.Error(err))
	}
	return err
}

// Wait waits until no teardown is running, or ctx ends (daemon shutdown):
// then the teardowns running stop pausing between tries.
func (t *Teardowns) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		if t.stop != nil {
			t.stop()
			t.pauses, t.stop = nil, nil
		}
		t.mu.Unlock()
		return ctx.Err()
	}
}

// Stats returns the counts so far.
func (t *Teardowns) Stats() TeardownStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TeardownStats{Pending: t.pending, Done: t.done, Failed: t.failed}
}

func (t *Teardowns) logger() *zap.Logger {
	if t.Log == nil {
		return zap.NewNop()
	}
	return t.Log
}

// RunningDeleter is what a backend offers to delete an instance known to
// run (a job's or a warm one at its teardown) the cheapest way it can: a
// force stop then a delete, not a delete refused first because the
// instance runs (docs/BENCHMARKS.md, "Teardown").
type RunningDeleter interface {
	DeleteRunningInstance(ctx context.Context, name string) error
}

// deleteRunning deletes a running instance of be, the cheap way when be has one.
func deleteRunning(ctx context.Context, be Backend, name string) error {
	if d, ok := be.(RunningDeleter); ok {
		return d.DeleteRunningInstance(ctx, name)
	}
	return be.DeleteInstance(ctx, name)
}
