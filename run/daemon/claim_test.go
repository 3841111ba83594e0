package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// failingKV fails its first fails Gets and its first createFails Creates
// the way a bucket electing a leader does (the request times out), then
// answers from the wrapped bucket.
type failingKV struct {
	KV
	mu                 sync.Mutex
	fails, createFails int
}

// fail takes one failure from *n.
func (f *failingKV) fail(n *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *n > 0 {
		*n--
		return true
	}
	return false
}

func (f *failingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if f.fail(&f.fails) {
		return nil, context.DeadlineExceeded
	}
	return f.KV.Get(ctx, key)
}

func (f *failingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if f.fail(&f.createFails) {
		return 0, context.DeadlineExceeded
	}
	return f.KV.Create(ctx, key, value, opts...)
}

// TestClaimsAcrossAnOutage: a claim's age alone does not hand its
// job over (after a bucket outage every claim is old); the delivery must
// watch it stay unchanged, and a holder that writes meanwhile keeps its
// job. A bucket that fails for a while costs no delivery.
func TestClaimsAcrossAnOutage(t *testing.T) {
	const deadRun = "20260101T000000Z-deadbeef"
	tests := []struct {
		name     string
		takeover time.Duration
		bound    time.Duration // OutageBound (0: an hour: not what the case tests)
		setup    func(t *testing.T, h *harness, key string)
		// during runs beside the delivery once it has paused a beat
		// (it has looked at the claim and kept its message alive).
		during    func(t *testing.T, h *harness, key string)
		reply     string
		execCalls int
		final     bool // the delivery's run is the job's result
	}{
		{name: "silent holder taken over once watched", takeover: 300 * time.Millisecond,
			setup: func(t *testing.T, h *harness, key string) {
				h.jobs.put(t, key, protocol.Claim{JobID: key, State: protocol.ClaimRunning, RunID: deadRun, Worker: "dead.1"}, time.Now().Add(-time.Hour))
			},
			reply: "ack", execCalls: 1, final: true},
		{name: "old claim whose holder writes again keeps its job", takeover: time.Hour,
			setup: func(t *testing.T, h *harness, key string) {
				h.jobs.put(t, key, protocol.Claim{JobID: key, State: protocol.ClaimRunning, RunID: deadRun, Worker: "slow.1"}, time.Now().Add(-time.Hour))
			},
			during: func(t *testing.T, h *harness, key string) {
				// The holder is back: its heartbeat, then its finished run.
				h.jobs.put(t, key, protocol.Claim{JobID: key, State: protocol.ClaimRunning, RunID: deadRun, Worker: "slow.1"}, time.Now())
				h.jobs.put(t, key, protocol.Claim{JobID: key, State: protocol.ClaimFinished, RunID: deadRun, Worker: "slow.1", Status: model.StatusPassed}, time.Now())
			},
			reply: "ack", execCalls: 0},
		{name: "claims bucket failing for a while", takeover: time.Hour,
			setup: func(t *testing.T, h *harness, key string) {
				h.d.Jobs = &failingKV{KV: h.jobs, fails: 3}
			},
			reply: "ack", execCalls: 1, final: true},
		{name: "results bucket failing for a while", takeover: time.Hour,
			setup: func(t *testing.T, h *harness, key string) {
				h.d.Results = &failingKV{KV: h.results, fails: 2}
			},
			reply: "ack", execCalls: 1, final: true},
		{name: "results bucket failing when the result is stored", takeover: time.Hour,
			setup: func(t *testing.T, h *harness, key string) {
				h.d.Results = &failingKV{KV: h.results, createFails: 3}
			},
			reply: "ack", execCalls: 1, final: true},
		{name: "claims bucket failing past the bound", takeover: time.Hour, bound: 300 * time.Millisecond,
			setup: func(t *testing.T, h *harness, key string) {
				h.d.Jobs = &failingKV{KV: h.jobs, fails: 1 << 30}
			},
			reply: "nak", execCalls: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.d.Config.TakeoverAfter, h.d.Config.OutageBound = tc.takeover, time.Hour
			if tc.bound > 0 {
				h.d.Config.OutageBound = tc.bound
			}
			id := uuid.New()
			key := id.String()
			m := newMsg(h.spec(t, id, "demo-pass"), 1, 7)
			m.hdr.Set("Nats-Msg-Id", key)
			tc.setup(t, h, key)
			done := make(chan struct{})
			go func() { defer close(done); h.process(t, m) }()
			if tc.during != nil {
				waitProgress(t, m, done)
				tc.during(t, h, key)
			}
			<-done
			if got := m.got(); !hasPrefix(got, tc.reply) {
				t.Fatalf("replies = %q, want one starting with %q", got, tc.reply)
			}
			if got := h.exec.callCount(); got != tc.execCalls {
				t.Errorf("executor calls = %d, want %d", got, tc.execCalls)
			}
			res := h.results.result(t, key)
			switch {
			case tc.final && (res == nil || res.Status != model.StatusPassed || res.RunID == deadRun):
				t.Errorf("result = %+v, want this delivery's passed run", res)
			case !tc.final && res != nil:
				t.Errorf("a result was stored: %+v", res)
			}
			if tc.final {
				if m.progressCount() == 0 {
					t.Error("the delivery never kept its message in progress while it waited")
				}
			}
		})
	}
}

// waitProgress returns once m was kept in progress (the delivery paused
// for a beat); it fails if the delivery ended first.
func waitProgress(t *testing.T, m *fakeMsg, done <-chan struct{}) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for m.progressCount() == 0 {
		select {
		case <-done:
			t.Fatalf("the delivery ended (%q) before it paused", m.got())
		case <-tick.C:
		}
	}
}
