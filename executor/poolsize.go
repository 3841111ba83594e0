package executor

import (
	"context"
	"time"
)

// The warm pool's size follows demand (docs/INCUS.md, "The warm pool's
// size"): the jobs waiting in the work queue and those that came lately,
// between a floor and a ceiling that the flags and the host set; creates
// run a few at once, within a budget of incusd work that the running
// jobs' teardowns share.

// PoolSizing is the sizing policy's knobs.
type PoolSizing struct {
	// Min is kept ready per key even when nothing comes; Max is the most
	// ready or being made per key (flags --warm-min, --warm-max).
	Min, Max int
	// HostMax bounds Max by what the host holds (process slots); 0: none.
	HostMax int
	// Budget is how much incusd work (pool creates plus the jobs'
	// teardowns running) may be in flight at once (--warm-parallel); at
	// least one create runs whenever the pool has none ready or coming.
	Budget int
	// Window is how far back arrivals count (default 1 minute).
	Window time.Duration
}

// PoolDemand is what the policy sizes the pool to, for one key.
type PoolDemand struct {
	Pending  int // jobs in the work queue that no worker took yet
	Arrivals int // jobs that asked the pool for an instance within the window
	Ready    int // idle instances now
	Making   int // instances being created now
	Load     int // other incusd work in flight: the jobs' teardowns
}

// DefaultPoolWindow is PoolSizing.Window's default.
const DefaultPoolWindow = time.Minute

// Plan returns the pool's target for one key, and how many creates to
// start now: target is max(Pending, Arrivals) kept within [Min, Max] and
// HostMax; creates fill the gap to the target, no more at once than the
// budget leaves after the creates and teardowns already running. An empty
// pool with nothing coming starts one create past the budget, so the
// pool never stays empty behind a long teardown queue.
func (s PoolSizing) Plan(d PoolDemand) (target, start int) {
	hi := s.Ceiling()
	lo := min(s.Min, hi)
	target = min(max(d.Pending, d.Arrivals, lo), hi)
	target = max(target, 0)
	gap := target - d.Ready - d.Making
	if gap <= 0 {
		return target, 0
	}
	room := max(s.Budget, 1) - d.Making - d.Load
	if room <= 0 && d.Ready == 0 && d.Making == 0 {
		room = 1
	}
	return target, max(min(gap, room), 0)
}

// Ceiling is the most instances per key: Max, bounded by HostMax.
func (s PoolSizing) Ceiling() int {
	if s.HostMax > 0 && s.HostMax < s.Max {
		return s.HostMax
	}
	return s.Max
}

// QueueDepth tells the pool how many jobs wait in the work queue
// (run/daemon's Queue).
type QueueDepth interface {
	Pending(ctx context.Context) (int, error)
}

// arrivals counts the times of recent asks, dropping those before the window.
type arrivals struct{ at []time.Time }

func (a *arrivals) add(t time.Time) { a.at = append(a.at, t) }

func (a *arrivals) count(now time.Time, window time.Duration) int {
	keep := a.at[:0]
	for _, t := range a.at {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	a.at = keep
	return len(keep)
}
