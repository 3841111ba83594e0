package daemon

import (
	"context"
	"jerichoci/run/protocol"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"
)

type fakeInstances struct {
	mu      sync.Mutex
	list    []OwnedInstance
	deleted []string
}

func (f *fakeInstances) ListOwned(context.Context) ([]OwnedInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]OwnedInstance{}, f.list...), nil
}

// Delete fails, as an Incus request does, once ctx has ended.
func (f *fakeInstances) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, name)
	return nil
}

func TestReapDeletesOnlyOrphans(t *testing.T) {
	h := newHarness(t)
	const live, stale, back, other, done, gone = "job-live", "job-stale", "job-back", "job-other", "job-done", "job-gone"
	now := time.Now()
	h.jobs.put(t, back, protocol.Claim{JobID: back, State: protocol.ClaimRunning, RunID: "20260101T000000Z-00000011"}, now.Add(-time.Hour))
	h.jobs.put(t, live, protocol.Claim{JobID: live, State: protocol.ClaimRunning, RunID: "20260101T000000Z-00000001"}, now)
	h.jobs.put(t, stale, protocol.Claim{JobID: stale, State: protocol.ClaimRunning, RunID: "20260101T000000Z-00000002"}, now.Add(-time.Hour))
	h.jobs.put(t, other, protocol.Claim{JobID: other, State: protocol.ClaimRunning, RunID: "20260101T000000Z-00000099"}, now)
	h.jobs.put(t, done, protocol.Claim{JobID: done, State: protocol.ClaimFinished, RunID: "20260101T000000Z-00000004"}, now)
	h.d.Config.Fleet = "fleet-a"
	old := now.Add(-time.Hour)
	inst := func(name, key, runID string) OwnedInstance {
		return OwnedInstance{Name: name, RunID: runID, JobID: "hello", Owner: OwnerPrefix + key + "/d.1", Fleet: "fleet-a", Created: old}
	}
	young, otherFleet, noFleet := inst("i-young", gone, "20260101T000000Z-00000008"), inst("i-other-fleet", gone, "20260101T000000Z-00000009"),
		inst("i-no-fleet", gone, "20260101T000000Z-00000010")
	young.Created, otherFleet.Fleet, noFleet.Fleet = now, "fleet-b", ""
	fi := &fakeInstances{list: []OwnedInstance{
		inst("i-live", live, "20260101T000000Z-00000001"),
		inst("i-stale", stale, "20260101T000000Z-00000002"),
		inst("i-back", back, "20260101T000000Z-00000011"),
		inst("i-other-run", other, "20260101T000000Z-00000003"),
		inst("i-done", done, "20260101T000000Z-00000004"),
		inst("i-no-claim", gone, "20260101T000000Z-00000005"),
		{Name: "i-cli-run", RunID: "20260101T000000Z-00000006", JobID: "hello", Owner: "laptop-1234", Fleet: "fleet-a", Created: old},
		{Name: "i-bad-owner", RunID: "20260101T000000Z-00000007", JobID: "hello", Owner: OwnerPrefix + "no-slash", Fleet: "fleet-a", Created: old},
		young,      // younger than the staleness window: its claim may not be written yet
		otherFleet, // another fleet's: never ours to judge
		noFleet,    // an older daemon's, or nobody's
	}}
	h.d.Instances = fi
	deleted, err := h.d.Reap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(deleted)
	// A claim stale by its age is only watched on the first pass: after an
	// outage of the bucket every claim is old.
	want := []string{"i-done", "i-no-claim", "i-other-run"}
	if !reflect.DeepEqual(deleted, want) {
		t.Errorf("first Reap deleted %q, want %q", deleted, want)
	}
	// job-back's worker writes again (still an old claim, but a new
	// revision); job-stale's stays silent for the watch.
	h.jobs.put(t, back, protocol.Claim{JobID: back, State: protocol.ClaimRunning, RunID: "20260101T000000Z-00000011"}, now.Add(-time.Hour))
	time.Sleep(h.d.Config.takeoverAfter())
	fi.list = []OwnedInstance{inst("i-live", live, "20260101T000000Z-00000001"), inst("i-stale", stale, "20260101T000000Z-00000002"),
		inst("i-back", back, "20260101T000000Z-00000011")}
	deleted, err = h.d.Reap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"i-stale"}; !reflect.DeepEqual(deleted, want) {
		t.Errorf("second Reap deleted %q, want %q", deleted, want)
	}
}

func TestReapKeepsLocalRuns(t *testing.T) {
	h := newHarness(t)
	a := &attempt{d: h.d, key: "job-1"}
	a.setClaim(&claimEntry{Claim: protocol.Claim{RunID: "20260101T000000Z-00000001"}})
	h.d.register(a)
	h.d.Config.Fleet = "fleet-a"
	fi := &fakeInstances{list: []OwnedInstance{{Name: "i-1", RunID: "20260101T000000Z-00000001", Owner: OwnerPrefix + "job-1/test.1",
		Fleet: "fleet-a", Created: time.Now().Add(-time.Hour)}}}
	h.d.Instances = fi
	if deleted, err := h.d.Reap(t.Context()); err != nil || len(deleted) != 0 {
		t.Errorf("Reap = %q, %v; want nothing deleted while the run is local", deleted, err)
	}
}

func TestJobKeyOfOwner(t *testing.T) {
	tests := []struct {
		owner, key string
		ok         bool
	}{
		{OwnerPrefix + "0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11/host-1.2", "0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11", true},
		{OwnerPrefix + "seq-4/host-1.giveup", "seq-4", true},
		{"host-1234", "", false},
		{OwnerPrefix + "nokey", "", false},
		{OwnerPrefix + "bad key/x", "", false},
	}
	for _, tc := range tests {
		if key, ok := jobKeyOfOwner(tc.owner); key != tc.key && tc.ok || ok != tc.ok {
			t.Errorf("jobKeyOfOwner(%q) = %q, %v; want %q, %v", tc.owner, key, ok, tc.key, tc.ok)
		}
	}
}

func TestReapPoolInstancesOfGoneDaemons(t *testing.T) {
	h := newHarness(t)
	h.d.Config.Fleet, h.d.Config.PoolOwner, h.d.Config.PoolMaxAge = "fleet-a", PoolOwnerPrefix+"d1/100", 10*time.Minute
	now := time.Now()
	pool := func(name, owner, fleet string, age time.Duration) OwnedInstance {
		return OwnedInstance{Name: name, RunID: "pool", JobID: "pool", Owner: owner, Fleet: fleet, Created: now.Add(-age)}
	}
	fi := &fakeInstances{list: []OwnedInstance{
		pool("p-mine-old", PoolOwnerPrefix+"d1/100", "fleet-a", time.Hour),  // this process's pool manages it
		pool("p-gone", PoolOwnerPrefix+"d2/7", "fleet-a", time.Hour),        // older than 2×MaxAge: its daemon is gone
		pool("p-restarted", PoolOwnerPrefix+"d1/99", "fleet-a", time.Hour),  // this daemon's previous process
		pool("p-live", PoolOwnerPrefix+"d2/7", "fleet-a", 15*time.Minute),   // may still be a live pool's
		pool("p-other-fleet", PoolOwnerPrefix+"d3/1", "fleet-b", time.Hour), // not ours to judge
	}}
	h.d.Instances = fi
	deleted, err := h.d.Reap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(deleted)
	if want := []string{"p-gone", "p-restarted"}; !reflect.DeepEqual(deleted, want) {
		t.Errorf("Reap deleted %q, want %q", deleted, want)
	}
}
