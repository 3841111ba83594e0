package executor

import (
	"context"
	"errors"
	"testing"
	"time"

	"jerichoci/model"
)

// gatedBackend holds each create until the test lets it go (or fails it).
type gatedBackend struct {
	*fakeBackend
	gate chan error
}

func (g *gatedBackend) CreateInstance(ctx context.Context, spec InstanceSpec) error {
	if err := g.fakeBackend.CreateInstance(ctx, spec); err != nil {
		return err
	}
	select {
	case err := <-g.gate:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A job that misses the pool while it makes an instance waits for that
// one, and one whose create fails is told at once (it then makes its own).
func TestPoolTakeWaitsForAnInstanceBeingMade(t *testing.T) {
	for _, tc := range []struct {
		name    string
		create  error
		taken   bool
		waited  int
		created int
	}{
		{"the create succeeds: the job takes it", nil, true, 1, 1},
		{"the create fails: the job is told", errors.New("incusd said no"), false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &gatedBackend{fakeBackend: &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}, gate: make(chan error)}
			pool := newPool(t, be.fakeBackend)
			pool.Backend = be
			pool.Want("pikaci/dev", model.InstanceContainer, "fp1")
			filled := make(chan struct{})
			fillCtx, stopFill := context.WithCancel(t.Context())
			defer stopFill()
			go func() { pool.fill(fillCtx); close(filled) }()
			// Wait until the pool is making its instance (its create called).
			for {
				be.mu.Lock()
				n := len(be.created)
				be.mu.Unlock()
				if n == 1 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			type take struct {
				t  Taken
				ok bool
			}
			got := make(chan take, 1)
			go func() {
				tk, ok := pool.TakeWait(t.Context(), "pikaci/dev", model.InstanceContainer, "fp1")
				got <- take{tk, ok}
			}()
			// The job registers as a waiter before the create is let go.
			for {
				pool.mu.Lock()
				n := len(pool.waiting[poolKey{"pikaci/dev", model.InstanceContainer}])
				pool.mu.Unlock()
				if n == 1 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			be.gate <- tc.create
			r := <-got
			st := pool.Stats()
			stopFill() // the pool goes on making its floor's instance
			<-filled
			if r.ok != tc.taken || (r.ok && r.t.Name == "") || st.Waited != tc.waited || st.Created != tc.created {
				t.Fatalf("TakeWait = %+v, %v; stats %+v; want taken %v, waited %d, created %d, none left idle", r.t, r.ok, st, tc.taken, tc.waited, tc.created)
			}
		})
	}
}

// With nothing being made a job does not wait.
func TestPoolTakeWaitMissesWhenNothingIsMade(t *testing.T) {
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
	pool := newPool(t, be)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, ok := pool.TakeWait(ctx, "pikaci/dev", model.InstanceContainer, "fp1"); ok {
		t.Fatal("TakeWait took an instance from an empty pool making none")
	}
	if ctx.Err() != nil {
		t.Fatal("TakeWait waited with nothing being made")
	}
}
