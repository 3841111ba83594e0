package executor

import (
	"testing"
	"time"
)

func TestPoolSizingPlan(t *testing.T) {
	base := PoolSizing{Min: 1, Max: 4, Budget: 2}
	for _, tc := range []struct {
		name          string
		s             PoolSizing
		d             PoolDemand
		target, start int
	}{
		{"idle: the floor", base, PoolDemand{}, 1, 1},
		{"idle and full", base, PoolDemand{Ready: 1}, 1, 0},
		{"a burst waiting: up to the budget", base, PoolDemand{Pending: 6}, 4, 2},
		{"a burst waiting, creates running", base, PoolDemand{Pending: 6, Making: 2}, 4, 0},
		{"a burst waiting, one create running", base, PoolDemand{Pending: 6, Making: 1, Ready: 1}, 4, 1},
		{"recent arrivals without a queue", base, PoolDemand{Arrivals: 3, Ready: 1}, 3, 2},
		{"the larger of queue and arrivals", base, PoolDemand{Pending: 2, Arrivals: 3}, 3, 2},
		{"teardowns take the budget", base, PoolDemand{Pending: 4, Ready: 1, Load: 2}, 4, 0},
		{"teardowns take the budget, pool empty: one create", base, PoolDemand{Pending: 4, Load: 5}, 4, 1},
		{"teardowns leave room for one", base, PoolDemand{Pending: 4, Load: 1}, 4, 1},
		{"the host bounds the ceiling", PoolSizing{Min: 1, Max: 8, HostMax: 3, Budget: 8}, PoolDemand{Pending: 10}, 3, 3},
		{"the host bounds the floor", PoolSizing{Min: 4, Max: 8, HostMax: 2, Budget: 8}, PoolDemand{}, 2, 2},
		{"more ready than the target: nothing to start", base, PoolDemand{Ready: 3}, 1, 0},
		{"fixed size (min = max)", PoolSizing{Min: 2, Max: 2, Budget: 1}, PoolDemand{Pending: 9}, 2, 1},
		{"budget 0 counts as 1", PoolSizing{Min: 2, Max: 2}, PoolDemand{}, 2, 1},
		{"no pool", PoolSizing{}, PoolDemand{Pending: 3}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, start := tc.s.Plan(tc.d)
			if target != tc.target || start != tc.start {
				t.Fatalf("Plan(%+v) with %+v = target %d, start %d; want %d, %d", tc.d, tc.s, target, start, tc.target, tc.start)
			}
		})
	}
}

func TestPoolArrivalsWindow(t *testing.T) {
	now := time.Now()
	var a arrivals
	for _, ago := range []time.Duration{90 * time.Second, 61 * time.Second, 30 * time.Second, time.Second} {
		a.add(now.Add(-ago))
	}
	if got := a.count(now, time.Minute); got != 2 {
		t.Fatalf("arrivals within a minute = %d; want 2", got)
	}
	if got := a.count(now.Add(time.Minute), time.Minute); got != 0 {
		t.Fatalf("arrivals a minute later = %d; want 0", got)
	}
}
