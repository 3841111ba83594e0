package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/executor"
	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

// hookExec runs during while the job runs, then the scripted executor.
type hookExec struct {
	run.JobExecutor
	during func()
}

func (e hookExec) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	e.during()
	return e.JobExecutor.Execute(ctx, job)
}

// refusingKV is a bucket whose creates fail.
type refusingKV struct{ KV }

func (refusingKV) Create(context.Context, string, []byte, ...jetstream.KVCreateOpt) (uint64, error) {
	return 0, errors.New("nats: no responders")
}

// TestDaemonSettlesTheStoreOutcome: a passed run whose result cannot be
// stored is settled as classify decides the store's outcome.
func TestDaemonSettlesTheStoreOutcome(t *testing.T) {
	other := model.RunRecord{RunID: "20260101T000000Z-00000000", Status: model.StatusPassed, Jobs: []model.JobRecord{}}
	tests := []struct {
		name  string
		setup func(h *harness)
		// during runs while the job runs.
		during   func(t *testing.T, h *harness, id string)
		replies  []string
		message  string // prefix of the attempt's run.json message
		claim    protocol.ClaimState
		resultID string // run id of the job's result afterwards; "" = none
	}{
		{name: "another attempt stored the result first",
			during:  func(t *testing.T, h *harness, id string) { h.results.put(t, id, other, time.Now()) },
			replies: []string{"ack"}, message: "superseded: the job already has its final record", claim: protocol.ClaimRunning,
			resultID: other.RunID},
		{name: "the results bucket fails",
			setup:   func(h *harness) { h.d.Results = refusingKV{h.results} }, // take only reads it
			replies: []string{"nak:1s"}, message: "could not store the result, the job goes back to the queue: store result",
			claim: protocol.ClaimQueued},
		{name: "another worker took the claim over",
			during: func(t *testing.T, h *harness, id string) {
				h.jobs.put(t, id, protocol.Claim{JobID: id, State: protocol.ClaimRunning, RunID: "20260101T000000Z-0000beef", Worker: "other.1"}, time.Now())
			},
			message: "superseded: another worker took the job over", claim: protocol.ClaimRunning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := uuid.New().String()
			if tc.setup != nil {
				tc.setup(h)
			}
			if tc.during != nil {
				h.d.NewExecutor = func(owner string) run.JobExecutor {
					return hookExec{JobExecutor: h.exec.forOwner(owner), during: func() { tc.during(t, h, id) }}
				}
			}
			m := newMsg(h.spec(t, uuid.MustParse(id), "demo-pass"), 1, 7)
			h.process(t, m)
			if got := m.got(); strings.Join(got, ",") != strings.Join(tc.replies, ",") {
				t.Fatalf("replies = %q, want %q", got, tc.replies)
			}
			c := h.jobs.claim(t, id)
			if c == nil || c.State != tc.claim {
				t.Fatalf("claim = %+v, want state %s", c, tc.claim)
			}
			runs, err := run.ListRuns(h.d.Runner.StateRoot)
			if err != nil || len(runs) != 1 {
				t.Fatalf("runs = %v, %v; want the attempt's one", runs, err)
			}
			disk := h.diskRecord(t, runs[0].RunID)
			if disk.Status != model.StatusFailed || !strings.HasPrefix(model.Value(disk.Message), tc.message) {
				t.Errorf("run.json = %s %q, want failed %q…", disk.Status, model.Value(disk.Message), tc.message)
			}
			if tc.claim == protocol.ClaimQueued && !strings.HasPrefix(c.LastError, tc.message) {
				t.Errorf("released claim's last error = %q, want %q…", c.LastError, tc.message)
			}
			resultID := ""
			if r := h.results.result(t, id); r != nil {
				resultID = r.RunID
			}
			if resultID != tc.resultID {
				t.Errorf("the job's result is run %q, want %q", resultID, tc.resultID)
			}
		})
	}
}
