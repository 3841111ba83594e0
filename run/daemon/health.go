package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// HealthProbe answers nil when what it probes can be used now; for serve
// it is incusd's cheapest authenticated request.
type HealthProbe interface {
	Check(ctx context.Context) error
}

// HealthConfig tunes a Health; every field must be positive (serve checks
// its flags).
type HealthConfig struct {
	// Every is the period of the checks, Timeout the bound of each.
	Every   time.Duration
	Timeout time.Duration
	// Failures is how many failed checks in a row make it unhealthy; one
	// success makes it healthy again.
	Failures int
}

// DefaultHealthConfig checks every 5 s, each within 5 s; two failures in
// a row (5 to 15 s of an unreachable incusd) make it unhealthy.
func DefaultHealthConfig() HealthConfig {
	return HealthConfig{Every: 5 * time.Second, Timeout: 5 * time.Second, Failures: 2}
}

// Health follows one dependency of the workers (incusd) by checking it
// periodically: Failures failed checks in a row make it unhealthy, one
// success healthy again, each transition logged once. It is the daemon's
// Gate: while unhealthy no worker pulls, so the jobs go to the fleet's
// other daemons instead of failing here (docs/RELIABILITY.md, "incusd
// unreachable from one worker"). It starts healthy: serve has reached
// incusd before it starts the workers.
type Health struct {
	// Name names the dependency in messages ("incusd").
	Name   string
	Probe  HealthProbe
	Config HealthConfig
	Log    *zap.Logger
	// Now is the clock of the down time logged (nil: time.Now).
	Now func() time.Time

	mu        sync.Mutex
	down      bool
	fails     int
	firstFail time.Time // of the current run of failures
	err       error     // the last failure's, while down
	change    chan struct{}
}

var _ Gate = (*Health)(nil)

// Run checks at once and then every Config.Every until ctx ends.
func (h *Health) Run(ctx context.Context) {
	t := time.NewTicker(h.Config.Every)
	defer t.Stop()
	h.RunTicks(ctx, t.C)
}

// RunTicks checks at once and then at each tick until ctx ends.
func (h *Health) RunTicks(ctx context.Context, ticks <-chan time.Time) {
	for {
		h.CheckOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

// CheckOnce runs the probe within Config.Timeout and observes its answer
// (nothing when ctx has ended: a stopping daemon's check proves nothing).
func (h *Health) CheckOnce(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, h.Config.Timeout)
	err := h.Probe.Check(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	h.Observe(err)
}

// Observe feeds one check's answer to the state machine.
func (h *Health) Observe(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.initLocked()
	log := h.logger()
	if err == nil {
		wasDown, since := h.down, h.firstFail
		h.down, h.fails, h.err = false, 0, nil
		if wasDown {
			log.Info(h.Name+" reachable again; taking jobs", zap.Duration("down_for", h.now().Sub(since).Round(time.Millisecond)))
			h.flipLocked()
		}
		return
	}
	h.fails++
	if h.fails == 1 {
		h.firstFail = h.now()
	}
	if h.down {
		h.err = err // /readyz names the latest
		return
	}
	if h.fails >= h.Config.Failures {
		h.down, h.err = true, err
		log.Warn(h.Name+" unreachable; taking no jobs until it answers again", zap.Error(err), zap.Int("failed_checks", h.fails))
		h.flipLocked()
	}
}

// Healthy reports the current state.
func (h *Health) Healthy() bool { return h.Err() == nil }

// Err is nil while healthy, else "<name> unreachable: <last error>".
func (h *Health) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return nil
	}
	return fmt.Errorf("%s unreachable: %w", h.Name, h.err)
}

// Open returns once healthy (nil) or when ctx ends (its error), with a
// channel closed at the next transition (to unhealthy).
func (h *Health) Open(ctx context.Context) (<-chan struct{}, error) {
	for {
		h.mu.Lock()
		h.initLocked()
		down, change := h.down, h.change
		h.mu.Unlock()
		if !down {
			return change, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-change:
		}
	}
}

func (h *Health) initLocked() {
	if h.change == nil {
		h.change = make(chan struct{})
	}
}

// flipLocked wakes whoever waits for the transition just made.
func (h *Health) flipLocked() {
	close(h.change)
	h.change = make(chan struct{})
}

func (h *Health) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Health) logger() *zap.Logger {
	if h.Log != nil {
		return h.Log
	}
	return zap.NewNop()
}
