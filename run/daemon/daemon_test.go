package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
	"jerichoci/sourcetar"
)

func TestDaemonSettlesEachOutcome(t *testing.T) {
	fails := executor.Result{Status: model.StatusFailed, ExitCode: ptr(int32(3)), Message: "test command exited with 3"}
	tests := []struct {
		name      string
		data      func(h *harness, id uuid.UUID) []byte
		delivered uint64
		setup     func(t *testing.T, h *harness, id uuid.UUID)
		reply     string // prefix of the only reply
		status    model.RunStatus
		message   string // substring of the final record's message; "" = none expected
		final     bool
		execCalls int
	}{
		{name: "passed", reply: "ack", status: model.StatusPassed, final: true, execCalls: 1},
		{name: "job failed", setup: func(_ *testing.T, h *harness, _ uuid.UUID) { h.exec.result = fails },
			reply: "ack", status: model.StatusFailed, final: true, execCalls: 1},
		{name: "invalid json", data: func(*harness, uuid.UUID) []byte { return []byte(`{"schema_version":1,`) },
			reply: "term:invalid job spec: expected a JSON object", status: model.StatusFailed,
			message: "invalid job spec: expected a JSON object", final: true},
		{name: "unknown lane", data: func(h *harness, id uuid.UUID) []byte {
			return []byte(`{"schema_version":1,"job_id":"` + id.String() + `","lane":"nope","source":{"kind":"host_path","path":"/x"}}`)
		}, reply: "term:unknown job `nope`", status: model.StatusFailed, message: "unknown job `nope`", final: true},
		{name: "a target id sent as a lane", data: func(h *harness, id uuid.UUID) []byte {
			return []byte(`{"schema_version":1,"job_id":"` + id.String() + `","lane":"demo-pass","source":{"kind":"host_path","path":"/x"}}`)
		}, reply: "term:unknown job `demo-pass`: no lane has this title, but a target has this id: send it as `target`", status: model.StatusFailed,
			message: "unknown job `demo-pass`: no lane has this title, but a target has this id: send it as `target`", final: true},
		{name: "infra error, not last", setup: func(_ *testing.T, h *harness, _ uuid.UUID) { h.exec.err = &executor.Error{Err: errBoom} },
			reply: "nak:1s", execCalls: 1},
		{name: "infra error, second delivery doubles the delay", delivered: 2,
			setup: func(_ *testing.T, h *harness, _ uuid.UUID) { h.exec.err = &executor.Error{Err: errBoom} }, reply: "nak:2s", execCalls: 1},
		{name: "infra error, last delivery", delivered: 3,
			setup: func(_ *testing.T, h *harness, _ uuid.UUID) { h.exec.err = &executor.Error{Err: errBoom} },
			reply: "ack", status: model.StatusFailed, message: "infrastructure error on the last delivery (3 of 3), giving up: job hello: incus: create instance: 500 boom",
			final: true, execCalls: 1},
		{name: "already finished", setup: func(t *testing.T, h *harness, id uuid.UUID) {
			h.results.put(t, id.String(), model.RunRecord{RunID: "20260101T000000Z-00000000", Status: model.StatusPassed, Jobs: []model.JobRecord{}}, time.Now())
		}, reply: "ack"},
		{name: "cancelled before it started", setup: func(t *testing.T, h *harness, id uuid.UUID) {
			h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimCancelled, CancelRequested: true}, time.Now())
		}, reply: "ack", status: model.StatusFailed, message: "cancelled", final: true},
		{name: "stale claim taken over", setup: func(t *testing.T, h *harness, id uuid.UUID) {
			h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimRunning, RunID: "20260101T000000Z-deadbeef", Worker: "dead.1"},
				time.Now().Add(-time.Hour))
		}, reply: "ack", status: model.StatusPassed, final: true, execCalls: 1},
		{name: "released claim taken", setup: func(t *testing.T, h *harness, id uuid.UUID) {
			h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimQueued, RunID: "20260101T000000Z-deadbeef"}, time.Now())
		}, reply: "ack", status: model.StatusPassed, final: true, execCalls: 1},
		{name: "runtime override to host process", data: func(h *harness, id uuid.UUID) []byte {
			return []byte(`{"schema_version":1,"job_id":"` + id.String() + `","target":"demo-pass","source":{"kind":"host_path","path":"/x"},"runtime":{"kind":"host_process"}}`)
		}, reply: "term:field `runtime`", status: model.StatusFailed, message: "this daemon runs jobs in Incus only", final: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := uuid.New()
			data := h.spec(t, id, "demo-pass")
			if tc.data != nil {
				data = tc.data(h, id)
			}
			if tc.setup != nil {
				tc.setup(t, h, id)
			}
			delivered := tc.delivered
			if delivered == 0 {
				delivered = 1
			}
			m := newMsg(data, delivered, 7)
			m.hdr.Set("Nats-Msg-Id", id.String())
			h.process(t, m)

			if got := m.got(); !hasPrefix(got, tc.reply) {
				t.Fatalf("replies = %q, want one starting with %q", got, tc.reply)
			}
			if got := h.exec.callCount(); got != tc.execCalls {
				t.Errorf("executor calls = %d, want %d", got, tc.execCalls)
			}
			res := h.results.result(t, id.String())
			if !tc.final {
				if res != nil && tc.name != "already finished" {
					t.Fatalf("a result was stored: %+v", res)
				}
				return
			}
			if res == nil {
				t.Fatal("no result stored")
			}
			if res.Status != tc.status {
				t.Errorf("result status = %s, want %s", res.Status, tc.status)
			}
			if tc.message != "" && (res.Message == nil || !strings.Contains(*res.Message, tc.message)) {
				t.Errorf("result message = %v, want it to contain %q", model.Value(res.Message), tc.message)
			}
			disk := h.diskRecord(t, res.RunID)
			if !reflect.DeepEqual(disk, *res) {
				t.Errorf("run.json differs from the stored result:\n disk %+v\n kv   %+v", disk, *res)
			}
			if c := h.jobs.claim(t, id.String()); c == nil || c.State != protocol.ClaimFinished || c.RunID != res.RunID || c.Status != res.Status {
				t.Errorf("claim = %+v, want finished with run %s", c, res.RunID)
			}
			evs := h.pub.events(id.String())
			if len(evs) < 2 || evs[0] != model.EventRunStarted || evs[len(evs)-1] != model.EventRunFinished+":final=true" {
				t.Errorf("events = %q, want run_started … run_finished:final=true", evs)
			}
		})
	}
}

func TestDaemonInfraRetryReleasesTheClaim(t *testing.T) {
	h := newHarness(t)
	h.exec.err = &executor.Error{Err: errBoom}
	id := uuid.New()
	data := h.spec(t, id, "demo-pass")
	m := newMsg(data, 1, 1)
	h.process(t, m)
	c := h.jobs.claim(t, id.String())
	if c == nil || c.State != protocol.ClaimQueued {
		t.Fatalf("claim after a retryable failure = %+v, want queued", c)
	}
	first := h.diskRecord(t, c.RunID)
	if first.Message == nil || !strings.HasPrefix(*first.Message, "infrastructure error on delivery 1 of 3, the job goes back to the queue") {
		t.Errorf("first attempt's record message = %v", model.Value(first.Message))
	}
	if evs := h.pub.events(id.String()); evs[len(evs)-1] != model.EventRunFinished+":final=false" {
		t.Errorf("events = %q, want a non-final run_finished last", evs)
	}
	// The redelivery takes the released claim at once and runs again.
	h.exec.err = nil
	m2 := newMsg(data, 2, 1)
	h.process(t, m2)
	if got := m2.got(); !hasPrefix(got, "ack") {
		t.Fatalf("second delivery replies = %q, want ack", got)
	}
	res := h.results.result(t, id.String())
	if res == nil || res.Status != model.StatusPassed || res.RunID == first.RunID {
		t.Fatalf("result = %+v, want a new passed run", res)
	}
}

func TestDaemonDuplicateOfInvalidIsTerminatedWithoutRecord(t *testing.T) {
	h := newHarness(t)
	m := newMsg([]byte("not json"), 1, 9)
	h.process(t, m)
	if res := h.results.result(t, "seq-9"); res == nil {
		t.Fatal("no failed record under seq-9")
	}
	runs, _ := run.ListRuns(h.d.Runner.StateRoot)
	m2 := newMsg([]byte("not json"), 2, 9)
	h.process(t, m2)
	if got := m2.got(); !hasPrefix(got, "term:invalid job spec") {
		t.Fatalf("repeat replies = %q, want term", got)
	}
	if again, _ := run.ListRuns(h.d.Runner.StateRoot); len(again) != len(runs) {
		t.Errorf("runs on disk = %d after the repeat, want %d", len(again), len(runs))
	}
}

func TestDaemonCancelRunningJob(t *testing.T) {
	h := newHarness(t)
	id, m, done, _ := h.startBlocked(t)
	rep, err := h.d.Cancel(t.Context(), id.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.State != protocol.ClaimRunning {
		t.Errorf("cancel reply state = %q, want running", rep.State)
	}
	<-done
	if got := m.got(); !hasPrefix(got, "ack") {
		t.Fatalf("replies = %q, want ack", got)
	}
	res := h.results.result(t, id.String())
	if res == nil || res.Status != model.StatusFailed || model.Value(res.Message) != run.MsgCancelled {
		t.Fatalf("result = %+v, want failed with message cancelled", res)
	}
	// A second cancel changes nothing.
	rep, err = h.d.Cancel(t.Context(), id.String())
	if err != nil || rep.State != protocol.ClaimFinished {
		t.Errorf("cancel after the end = %+v, %v; want state finished", rep, err)
	}
}

func TestDaemonCancelFoundInClaimByHeartbeat(t *testing.T) {
	h := newHarness(t)
	id, m, done, _ := h.startBlocked(t)
	// Another daemon marks the claim; this one learns it from the claim.
	c, err := getClaim(t.Context(), h.jobs, id.String())
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	c.CancelRequested = true
	if _, err := updateClaim(t.Context(), h.jobs, c.Claim, c.rev); err != nil {
		t.Fatal(err)
	}
	<-done
	if res := h.results.result(t, id.String()); res == nil || model.Value(res.Message) != run.MsgCancelled {
		t.Fatalf("result = %+v, want cancelled", res)
	}
	if m.progress == 0 {
		t.Error("no InProgress was sent while the job ran")
	}
}

func TestDaemonKillHandsTheJobBack(t *testing.T) {
	h := newHarness(t)
	id, m, done, runID := h.startBlocked(t)
	h.d.Kill()
	<-done
	if got := m.got(); !reflect.DeepEqual(got, []string{"nak"}) {
		t.Fatalf("replies = %q, want an immediate nak", got)
	}
	if res := h.results.result(t, id.String()); res != nil {
		t.Fatalf("a result was stored: %+v", res)
	}
	if c := h.jobs.claim(t, id.String()); c == nil || c.State != protocol.ClaimQueued {
		t.Errorf("claim = %+v, want queued", c)
	}
	if r := h.diskRecord(t, runID); r.Status != model.StatusFailed || !strings.HasPrefix(model.Value(r.Message), "interrupted") {
		t.Errorf("run.json = %s %v, want failed interrupted", r.Status, model.Value(r.Message))
	}
}

func TestDaemonLostClaimNeitherAcksNorNaks(t *testing.T) {
	h := newHarness(t)
	id, m, done, _ := h.startBlocked(t)
	h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimRunning, RunID: "20260101T000000Z-0000beef", Worker: "other.1"}, time.Now())
	<-done
	if got := m.got(); len(got) != 0 {
		t.Fatalf("replies = %q, want none (the new holder settles)", got)
	}
	if res := h.results.result(t, id.String()); res != nil {
		t.Fatalf("a result was stored: %+v", res)
	}
}

// TestDaemonWaitsForALiveHolder: a delivery of a job that another live
// worker holds waits, an InProgress at each of its heartbeats and no reply,
// while the holder keeps its claim fresh; once the holder finishes, it acks
// as a duplicate without running the job. The holder is paced by the
// waiting delivery's heartbeats, not by the clock.
func TestDaemonWaitsForALiveHolder(t *testing.T) {
	h := newHarness(t)
	id := uuid.New()
	h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimRunning, RunID: "20260101T000000Z-0000beef", Worker: "other.1"}, time.Now())
	m := newMsg(h.spec(t, id, "demo-pass"), 2, 1)
	done := make(chan struct{})
	go func() { defer close(done); h.process(t, m) }()
	for beat := 1; beat <= 3; beat++ {
		waitForBeats(t, m, done, beat)
		c, err := getClaim(t.Context(), h.jobs, id.String())
		if err != nil || c == nil {
			t.Fatalf("the holder's claim: %+v, %v", c, err)
		}
		if _, err := updateClaim(t.Context(), h.jobs, c.Claim, c.rev); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.got(); len(got) != 0 {
		t.Fatalf("replies = %q while the holder is live, want none", got)
	}
	h.results.put(t, id.String(), model.RunRecord{RunID: "20260101T000000Z-0000beef", Status: model.StatusPassed, Jobs: []model.JobRecord{}}, time.Now())
	h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimFinished, RunID: "20260101T000000Z-0000beef"}, time.Now())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the waiting delivery did not settle within 10s of the holder finishing; replies %q", m.got())
	}
	if got := m.got(); !hasPrefix(got, "ack") {
		t.Fatalf("replies = %q, want ack as a duplicate", got)
	}
	if n := h.exec.callCount(); n != 0 {
		t.Errorf("executor calls = %d, want 0: the job ran elsewhere", n)
	}
}

// waitForBeats waits (up to 10s) until m's delivery has sent n InProgress;
// it fails when the delivery settles first.
func waitForBeats(t *testing.T, m *fakeMsg, done <-chan struct{}, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.progressCount() < n {
		select {
		case <-done:
			t.Fatalf("the delivery settled after %d InProgress, replies %q; want it waiting for the live holder", m.progressCount(), m.got())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no InProgress %d within 10s (%d so far): the delivery is not waiting at its heartbeats", n, m.progressCount())
		}
	}
}

func TestDaemonObjectStoreSource(t *testing.T) {
	h := newHarness(t)
	var buf bytes.Buffer
	if err := sourcetar.Pack(t.Context(), h.src, &buf, nil); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	digest := hex.EncodeToString(sum[:])
	h.store[protocol.BucketSources+"/"+protocol.SourceObjectName(digest)] = buf.Bytes()
	spec := func(id uuid.UUID, digest string) []byte {
		return []byte(fmt.Sprintf(`{"schema_version":1,"job_id":%q,"target":"demo-pass","source":{"kind":"object_store","bucket":%q,"object":%q,"sha256":%q}}`,
			id, protocol.BucketSources, protocol.SourceObjectName(digest), digest))
	}
	tests := []struct {
		name, digest, reply string
	}{
		{"stored", digest, "ack"},
		{"digest mismatch", strings.Repeat("0", 64), "term:source sha256-0000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.digest != digest {
				h.store[protocol.BucketSources+"/"+protocol.SourceObjectName(tc.digest)] = buf.Bytes()
			}
			m := newMsg(spec(uuid.New(), tc.digest), 1, 1)
			h.process(t, m)
			if got := m.got(); !hasPrefix(got, tc.reply) {
				t.Fatalf("replies = %q, want %q", got, tc.reply)
			}
		})
	}
	readme := filepath.Join(h.d.Runner.StateRoot, "sources", digest, "tree", "README.md")
	if b, err := os.ReadFile(readme); err != nil || string(b) != "# demo\n" {
		t.Errorf("cached source README = %q, %v", b, err)
	}
}

func TestDaemonGiveUpRecordsAndDeletes(t *testing.T) {
	h := newHarness(t)
	id := uuid.New()
	// The last delivery's worker died holding the claim long ago.
	h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimRunning, RunID: "20260101T000000Z-0000dead", Worker: "dead.1",
		LastError: "infrastructure error on delivery 2 of 3, the job goes back to the queue: incus: 500"}, time.Now().Add(-time.Hour))
	dead := &deadLetters{}
	h.d.DeadLetters = dead
	deleted := 0
	h.d.GiveUp(&StoredMessage{Seq: 4, Deliveries: 3, Body: h.spec(t, id, "demo-pass"),
		Delete: func(context.Context) error { deleted++; return nil }})
	if deleted != 1 {
		t.Errorf("deleted %d times, want 1", deleted)
	}
	res := h.results.result(t, id.String())
	if res == nil || res.Status != model.StatusFailed || !strings.HasPrefix(model.Value(res.Message), "gave up: the job was delivered 3 times") {
		t.Fatalf("result = %+v, want a failed give-up record", res)
	}
	if h.exec.callCount() != 0 {
		t.Error("give-up ran the job")
	}
	want := protocol.DeadLetter{JobID: id.String(), StreamSeq: 4, Deliveries: 3, MaxDeliver: h.d.Config.MaxDeliver, RunID: res.RunID,
		LastError: "infrastructure error on delivery 2 of 3, the job goes back to the queue: incus: 500", Message: model.Value(res.Message)}
	if got := dead.all(); len(got) != 1 || withoutTime(got[0]) != want {
		t.Errorf("dead letters = %+v, want one: %+v", got, want)
	}
}

func TestDaemonInfraOnTheLastDeliveryIsADeadLetter(t *testing.T) {
	h := newHarness(t)
	dead := &deadLetters{}
	h.d.DeadLetters = dead
	h.exec.err = &executor.Error{Err: errors.New("incus: 500")}
	id := uuid.New()
	m := newMsg(h.spec(t, id, "demo-pass"), uint64(h.d.Config.MaxDeliver), 11)
	h.process(t, m)
	res := h.results.result(t, id.String())
	if res == nil || !strings.HasPrefix(model.Value(res.Message), "infrastructure error on the last delivery") {
		t.Fatalf("result = %+v, want the give-up record", res)
	}
	got := dead.all()
	if len(got) != 1 || got[0].JobID != id.String() || got[0].Deliveries != uint64(h.d.Config.MaxDeliver) || got[0].StreamSeq != 11 ||
		!strings.Contains(got[0].LastError, "incus: 500") || got[0].RunID != res.RunID {
		t.Errorf("dead letters = %+v, want one naming the job, its deliveries and the last error", got)
	}
	// A job that ran (passed or failed) is no dead letter.
	h.exec.err, h.exec.result = nil, passed()
	h.process(t, newMsg(h.spec(t, uuid.New(), "demo-pass"), uint64(h.d.Config.MaxDeliver), 12))
	if n := len(dead.all()); n != 1 {
		t.Errorf("%d dead letters after a job that ran, want still 1", n)
	}
}

type deadLetters struct {
	mu   sync.Mutex
	list []protocol.DeadLetter
}

func (d *deadLetters) PublishDead(_ context.Context, dl protocol.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, dl)
	return nil
}

func (d *deadLetters) all() []protocol.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]protocol.DeadLetter{}, d.list...)
}

func withoutTime(dl protocol.DeadLetter) protocol.DeadLetter {
	dl.At = ""
	return dl
}

// queueOf is a Source over a slice of messages that tracks how many are
// out (taken, not settled).
type queueOf struct {
	mu      sync.Mutex
	msgs    []*fakeMsg
	out     int
	maxOut  int
	settled int
}

func (q *queueOf) Next(ctx context.Context) (Message, error) {
	q.mu.Lock()
	if len(q.msgs) > 0 {
		m := q.msgs[0]
		q.msgs = q.msgs[1:]
		q.out++
		q.maxOut = max(q.maxOut, q.out)
		q.mu.Unlock()
		m.mu.Lock()
		m.onSettle = func() {
			q.mu.Lock()
			q.out--
			q.settled++
			q.mu.Unlock()
		}
		m.mu.Unlock()
		return m, nil
	}
	q.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDaemonPoolPullsOnlyWhenAWorkerIsFree(t *testing.T) {
	h := newHarness(t)
	q := &queueOf{}
	ids := make([]uuid.UUID, 12)
	for i := range ids {
		ids[i] = uuid.New()
		q.msgs = append(q.msgs, newMsg(h.spec(t, ids[i], "demo-pass"), 1, uint64(i+1)))
	}
	h.d.Queue, h.d.Config.Concurrency = q, 3
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- h.d.Run(ctx) }()
	waitUntil(t, "every job settled", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.settled == len(ids) })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if q.maxOut > 3 {
		t.Errorf("up to %d messages were out at once with 3 workers", q.maxOut)
	}
	if n := h.results.len(); n != len(ids) {
		t.Errorf("results = %d, want %d", n, len(ids))
	}
	for _, id := range ids {
		if r := h.results.result(t, id.String()); r == nil || r.Status != model.StatusPassed {
			t.Errorf("job %s: result %+v", id, r)
		}
	}
}

func TestCancelQueuedJob(t *testing.T) {
	h := newHarness(t)
	id := uuid.New().String()
	tests := []struct {
		state protocol.ClaimState
		msg   string
	}{
		{protocol.ClaimCancelled, "cancelled before it started"},
		{protocol.ClaimCancelled, "cancel already requested"},
	}
	for _, tc := range tests {
		rep, err := h.d.Cancel(t.Context(), id)
		if err != nil || rep.State != tc.state || !strings.HasPrefix(rep.Message, tc.msg) {
			t.Errorf("Cancel = %+v, %v; want state %s, message %q", rep, err, tc.state, tc.msg)
		}
	}
	if _, err := h.d.Cancel(t.Context(), "not a key"); err == nil {
		t.Error("Cancel of an invalid job id succeeded")
	}
}

func TestKeyFromMessage(t *testing.T) {
	tests := []struct {
		name, data, msgID, want string
	}{
		{"header", "junk", "0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11", "0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11"},
		{"job_id of a bad spec", `{"job_id":"abc-1","lane":5}`, "", "abc-1"},
		{"unsafe header", `junk`, "a.b", "seq-12"},
		{"nothing", `[1,2]`, "", "seq-12"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMsg([]byte(tc.data), 1, 12)
			if tc.msgID != "" {
				m.hdr.Set("Nats-Msg-Id", tc.msgID)
			}
			if got := keyFromMessage(m, 12); got != tc.want {
				t.Errorf("keyFromMessage = %q, want %q", got, tc.want)
			}
		})
	}
}

// startBlocked delivers a demo-pass job whose execution blocks until its
// context ends, and returns once it runs: the job id, its message, a channel
// closed when the delivery is processed, and the run id.
func (h *harness) startBlocked(t *testing.T) (id uuid.UUID, m *fakeMsg, done chan struct{}, runID string) {
	t.Helper()
	h.exec.block, h.exec.start = true, make(chan string, 1)
	id = uuid.New()
	m = newMsg(h.spec(t, id, "demo-pass"), 1, 1)
	done = make(chan struct{})
	go func() { defer close(done); h.process(t, m) }()
	return id, m, done, <-h.exec.start
}

func TestDaemonDropsACopyOfARunningJob(t *testing.T) {
	h := newHarness(t)
	id := uuid.New()
	h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimRunning, RunID: "20260101T000000Z-0000beef",
		Worker: "other.1", StreamSeq: 7}, time.Now())
	m := newMsg(h.spec(t, id, "demo-pass"), 1, 9) // another message with the same job id
	h.process(t, m)
	if got := m.got(); !hasPrefix(got, "ack") {
		t.Fatalf("replies = %q, want ack: the job's own message settles it", got)
	}
	if m.progress != 0 {
		t.Errorf("the copy waited (%d InProgress): it must not hold a worker slot", m.progress)
	}
	if n := h.exec.callCount(); n != 0 {
		t.Errorf("executor calls = %d, want 0", n)
	}
	c, err := getClaim(t.Context(), h.jobs, id.String())
	if err != nil || c.RunID != "20260101T000000Z-0000beef" || c.State != protocol.ClaimRunning {
		t.Errorf("claim = %+v, %v: the copy must leave the holder's claim alone", c, err)
	}
}

func TestDaemonClosesRunsLeftRunningByAKilledProcess(t *testing.T) {
	h := newHarness(t)
	store := h.d.Runner.Store()
	id, other := uuid.New(), uuid.New()
	left := func(runID, jobID string) {
		t.Helper()
		rec := model.RunRecord{RunID: runID, Status: model.StatusRunning, SourceRoot: "/s", CreatedAt: model.At(time.Now()), Jobs: []model.JobRecord{}}
		if err := store.CreateRun(runID); err != nil {
			t.Fatal(err)
		}
		if err := store.WriteRun(rec); err != nil {
			t.Fatal(err)
		}
		if err := store.WriteRunFile(runID, protocol.JobFileName, protocol.JobFile{JobID: jobID}); err != nil {
			t.Fatal(err)
		}
	}
	left("20260101T000000Z-00000001", id.String())    // another attempt took it over
	left("20260101T000000Z-00000002", other.String()) // nobody took it (yet)
	h.jobs.put(t, id.String(), protocol.Claim{JobID: id.String(), State: protocol.ClaimFinished, RunID: "20260101T000100Z-00000003", Worker: "b.1"}, time.Now())
	h.d.init()
	h.d.closeStaleRuns()
	tests := []struct{ runID, prefix, names string }{
		{"20260101T000000Z-00000001", "superseded: ", "run 20260101T000100Z-00000003 on b.1 took the job over"},
		{"20260101T000000Z-00000002", "interrupted: ", "stopped before it ended"},
	}
	for _, tc := range tests {
		rec := h.diskRecord(t, tc.runID)
		if rec.Status != model.StatusFailed || rec.Message == nil || !strings.HasPrefix(*rec.Message, tc.prefix) || !strings.Contains(*rec.Message, tc.names) {
			t.Errorf("run %s: %s %v, want failed %q… naming %q", tc.runID, rec.Status, rec.Message, tc.prefix, tc.names)
		}
	}
}
