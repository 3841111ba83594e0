package daemon

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// fakeProcesses: processes "here/…" are this host's; those listed in dead
// are gone.
type fakeProcesses struct{ dead map[string]bool }

func (f fakeProcesses) Local(p string) bool { return strings.HasPrefix(p, "here/") }
func (f fakeProcesses) Gone(p string) bool  { return f.Local(p) && f.dead[p] }

// fakePresence: last beats by process; absent ones never beat.
type fakePresence struct{ last map[string]time.Time }

func (f fakePresence) Beat(context.Context, string) error  { return nil }
func (f fakePresence) Leave(context.Context, string) error { return nil }
func (f fakePresence) LastBeat(_ context.Context, p string) (time.Time, bool, error) {
	t, ok := f.last[p]
	return t, ok, nil
}

func TestReapInstancesOfGoneProcesses(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	h.d.Config.Fleet, h.d.Config.Process = "fleet-a", "here/me"
	h.d.Config.PoolOwner, h.d.Config.PoolMaxAge = PoolOwnerPrefix+"d1/100", 10*time.Minute
	h.d.Processes = fakeProcesses{dead: map[string]bool{"here/dead": true}}
	h.d.Presence = fakePresence{last: map[string]time.Time{"far/beating": now, "far/silent": now.Add(-time.Hour)}}
	inst := func(name, owner, process, fleet string, age time.Duration) OwnedInstance {
		return OwnedInstance{Name: name, RunID: "pool", JobID: "pool", Owner: owner, Process: process, Fleet: fleet, Created: now.Add(-age)}
	}
	pool, job := PoolOwnerPrefix+"d9/1", OwnerPrefix+"job-x/d9.1"
	for _, tc := range []struct {
		name   string
		in     OwnedInstance
		reaped bool
	}{
		{"pool of a dead local process, young", inst("a", pool, "here/dead", "fleet-a", time.Second), true},
		{"pool of a dead local process, another fleet", inst("b", pool, "here/dead", "fleet-b", time.Second), true},
		{"job instance of a dead local process, no fleet (jerichoci run)", inst("c", "host-1", "here/dead", "", time.Second), true},
		{"job instance of a dead local process, young", inst("d", job, "here/dead", "fleet-b", time.Second), true},
		{"pool of a live local process, another fleet", inst("e", pool, "here/live", "fleet-b", time.Hour), false},
		{"pool of a live local process, young", inst("f", pool, "here/live", "fleet-a", time.Second), false},
		{"this process's own pool", inst("g", PoolOwnerPrefix+"d1/100", "here/me", "fleet-a", time.Hour), false},
		{"pool of a silent remote process", inst("h", pool, "far/silent", "fleet-a", time.Hour), true},
		{"pool of a remote process that never beat", inst("i", pool, "far/never", "fleet-a", time.Hour), true},
		{"pool of a beating remote process", inst("j", pool, "far/beating", "fleet-a", 15*time.Minute), false},
		{"pool of a silent remote process, younger than the window", inst("k", pool, "far/silent", "fleet-a", time.Second), false},
		{"pool of a silent remote process of another fleet", inst("l", pool, "far/silent", "fleet-b", time.Hour), false},
		{"no process key: the old rules, too young", inst("m", pool, "", "fleet-a", time.Second), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi := &fakeInstances{list: []OwnedInstance{tc.in}}
			h.d.Instances = fi
			deleted, err := h.d.Reap(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := len(deleted) == 1; got != tc.reaped {
				t.Errorf("Reap deleted %q, want reaped %v", deleted, tc.reaped)
			}
		})
	}
}

// TestReapDeletesBegunOnAStop: the daemon stopping while a pass runs
// (its context cancelled) does not cut the deletes of the instances a gone
// process of this host left: a restarted daemon stopped seconds later
// would otherwise leave them (seen by hand: the kill-and-restart check of
// issue 24, stopped 20 s after the restart, left the killed daemon's two
// pool instances).
func TestReapDeletesBegunOnAStop(t *testing.T) {
	h := newHarness(t)
	h.d.Config.Fleet, h.d.Config.Process = "fleet-a", "here/me"
	h.d.Processes = fakeProcesses{dead: map[string]bool{"here/dead": true}}
	pool := PoolOwnerPrefix + "d9/1"
	fi := &fakeInstances{list: []OwnedInstance{
		{Name: "a", RunID: "pool", JobID: "pool", Owner: pool, Process: "here/dead", Fleet: "fleet-a", Created: time.Now()},
		{Name: "b", RunID: "pool", JobID: "pool", Owner: pool, Process: "here/dead", Fleet: "fleet-a", Created: time.Now()},
	}}
	h.d.Instances = fi
	stopped, cancel := context.WithCancel(t.Context())
	cancel()
	deleted, err := h.d.Reap(stopped)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(deleted)
	if want := []string{"a", "b"}; !reflect.DeepEqual(deleted, want) {
		t.Errorf("Reap on a stopping daemon deleted %q, want %q", deleted, want)
	}
}

// TestReapWithoutJudges: a daemon without Processes or Presence keeps the
// old rules only.
func TestReapWithoutJudges(t *testing.T) {
	h := newHarness(t)
	h.d.Config.Fleet = "fleet-a"
	fi := &fakeInstances{list: []OwnedInstance{
		{Name: "a", RunID: "pool", JobID: "pool", Owner: PoolOwnerPrefix + "d9/1", Process: "here/dead", Fleet: "fleet-b", Created: time.Now()},
		{Name: "b", RunID: "pool", JobID: "pool", Owner: PoolOwnerPrefix + "d9/1", Process: "far/x", Fleet: "fleet-a", Created: time.Now().Add(-time.Hour)},
	}}
	h.d.Instances = fi
	deleted, err := h.d.Reap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(deleted)
	if want := []string{"b"}; !reflect.DeepEqual(deleted, want) { // past 2×the default MaxAge: the old pool rule
		t.Errorf("Reap deleted %q, want %q", deleted, want)
	}
}
