package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"jerichoci/executor"
	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
	"jerichoci/targets"
)

// memKV is an in-memory bucket with JetStream's create and compare-and-swap
// semantics.
type memKV struct {
	mu   sync.Mutex
	rev  uint64
	keys map[string]*memEntry
}

type memEntry struct {
	key     string
	value   []byte
	rev     uint64
	created time.Time
}

func (e *memEntry) Bucket() string                  { return "mem" }
func (e *memEntry) Key() string                     { return e.key }
func (e *memEntry) Value() []byte                   { return e.value }
func (e *memEntry) Revision() uint64                { return e.rev }
func (e *memEntry) Created() time.Time              { return e.created }
func (e *memEntry) Delta() uint64                   { return 0 }
func (e *memEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

func newMemKV() *memKV { return &memKV{keys: map[string]*memEntry{}} }

func (m *memKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	c := *e
	return &c, nil
}

func (m *memKV) Create(_ context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[key]; ok {
		return 0, jetstream.ErrKeyExists
	}
	m.rev++
	m.keys[key] = &memEntry{key: key, value: append([]byte{}, value...), rev: m.rev, created: time.Now()}
	return m.rev, nil
}

func (m *memKV) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[key]
	if !ok || e.rev != rev {
		return 0, jetstream.ErrKeyRevisionMismatch
	}
	m.rev++
	m.keys[key] = &memEntry{key: key, value: append([]byte{}, value...), rev: m.rev, created: time.Now()}
	return m.rev, nil
}

// put writes a value as if at time at (to age claims).
func (m *memKV) put(t *testing.T, key string, v any, at time.Time) {
	t.Helper()
	b, err := encodeJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.keys[key] = &memEntry{key: key, value: b, rev: m.rev, created: at}
}

func (m *memKV) claim(t *testing.T, key string) *protocol.Claim {
	t.Helper()
	c, err := getClaim(t.Context(), m, key)
	if err != nil {
		t.Fatal(err)
	}
	if c == nil {
		return nil
	}
	return &c.Claim
}

func (m *memKV) result(t *testing.T, key string) *model.RunRecord {
	t.Helper()
	r, err := getResult(t.Context(), m, key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (m *memKV) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

// fakeMsg records the replies a worker sends.
type fakeMsg struct {
	data      []byte
	hdr       nats.Header
	delivered uint64
	seq       uint64

	mu       sync.Mutex
	replies  []string // "ack", "term:<reason>", "nak", "nak:<delay>"
	progress int
	settled  chan struct{}
	onSettle func() // called before the reply returns
}

func newMsg(data []byte, delivered, seq uint64) *fakeMsg {
	return &fakeMsg{data: data, hdr: nats.Header{}, delivered: delivered, seq: seq, settled: make(chan struct{}, 8)}
}

func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Headers() nats.Header { return m.hdr }
func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered, Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}
func (m *fakeMsg) reply(s string) error {
	m.mu.Lock()
	m.replies = append(m.replies, s)
	f := m.onSettle
	m.mu.Unlock()
	if f != nil {
		f()
	}
	m.settled <- struct{}{}
	return nil
}
func (m *fakeMsg) DoubleAck(context.Context) error { return m.reply("ack") }
func (m *fakeMsg) Nak() error                      { return m.reply("nak") }
func (m *fakeMsg) NakWithDelay(d time.Duration) error {
	return m.reply("nak:" + d.String())
}
func (m *fakeMsg) TermWithReason(r string) error { return m.reply("term:" + r) }
func (m *fakeMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.progress++
	return nil
}

func (m *fakeMsg) progressCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.progress
}

func (m *fakeMsg) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string{}, m.replies...)
}

// pubRecorder keeps published events.
type pubRecorder struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (p *pubRecorder) Publish(_ context.Context, subject string, data []byte, h nats.Header) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, &nats.Msg{Subject: subject, Data: data, Header: h})
	return nil
}

// events returns "event" or "run_finished:final=<bool>" per message for a job.
func (p *pubRecorder) events(jobKey string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.msgs {
		if m.Header.Get(protocol.HeaderJobID) != jobKey {
			continue
		}
		e := m.Header.Get(protocol.HeaderEvent)
		if e == model.EventRunFinished {
			e += ":final=" + m.Header.Get(protocol.HeaderFinal)
		}
		out = append(out, e)
	}
	return out
}

// scriptExec is a JobExecutor scripted per test; block makes it wait for
// ctx (a job that runs until cancelled).
type scriptExec struct {
	mu     sync.Mutex
	calls  int
	owners []string
	result executor.Result
	err    error
	block  bool
	start  chan string // receives the run id when a job starts, if set
}

func (s *scriptExec) forOwner(owner string) run.JobExecutor {
	s.mu.Lock()
	s.owners = append(s.owners, owner)
	s.mu.Unlock()
	return s
}

func (s *scriptExec) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	if s.start != nil {
		s.start <- job.RunID
	}
	if s.block {
		<-ctx.Done()
		return executor.Result{}, &executor.Error{Err: ctx.Err()}
	}
	return s.result, s.err
}

func (s *scriptExec) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func passed() executor.Result {
	return executor.Result{Status: model.StatusPassed, ExitCode: new(int32), Message: "test passed",
		Execution: &model.RemoteLinuxVMExecutionRecord{Backend: model.BackendIncus, Phases: []model.PhaseRecord{}}}
}

// memStore is a SourceStore over a map of objects.
type memStore map[string][]byte

func (m memStore) Open(_ context.Context, bucket, object string) (io.ReadCloser, error) {
	b, ok := m[bucket+"/"+object]
	if !ok {
		return nil, ErrSourceNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m memStore) Stat(_ context.Context, bucket, object string) (ObjectInfo, error) {
	b, ok := m[bucket+"/"+object]
	if !ok {
		return ObjectInfo{}, ErrSourceNotFound
	}
	sum := sha256.Sum256(b)
	return ObjectInfo{Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// harness is a daemon over fakes, with a fast heartbeat.
type harness struct {
	d       *Daemon
	jobs    *memKV
	results *memKV
	pub     *pubRecorder
	exec    *scriptExec
	store   memStore
	src     string // a source directory
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	cat, err := targets.LoadProject("../../jerichoci.lanes.json")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# demo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &harness{jobs: newMemKV(), results: newMemKV(), pub: &pubRecorder{}, exec: &scriptExec{result: passed()},
		store: memStore{}, src: src}
	cfg := DefaultDaemonConfig()
	cfg.ID, cfg.AckWait, cfg.MaxDeliver, cfg.RetryDelay = "test", time.Second, 3, time.Second
	cfg.Heartbeat = 100 * time.Millisecond
	// Heartbeats every 100 ms keep the tests quick, but a claim written
	// now must stay live however long a loaded machine stalls a test:
	// stale only after 1000 beats (100 s). Stale claims in the tests are
	// an hour old.
	cfg.StaleBeats = 1000
	// A stale claim is taken over after it was watched unchanged for this
	// long (the watch is the delivery's own, so the old claims stay stale).
	cfg.TakeoverAfter = 300 * time.Millisecond
	// A bucket that keeps failing is waited out this long, not minutes.
	cfg.OutageBound = 500 * time.Millisecond
	cfg.HostPathRoot = os.TempDir()
	h.d = &Daemon{Config: cfg, Jobs: h.jobs, Results: h.results, Events: h.pub, Catalog: cat, Sources: h.store,
		NewExecutor: h.exec.forOwner, Log: zaptest.NewLogger(t),
		Runner: run.Runner{StateRoot: t.TempDir(), Env: func(string) (string, bool) { return "", false }}}
	h.d.init()
	return h
}

// spec returns a job spec for name with a host path source.
func (h *harness) spec(t *testing.T, id uuid.UUID, name string) []byte {
	t.Helper()
	b, err := encodeJSON(map[string]any{"schema_version": 1, "job_id": id.String(), "target": name,
		"source": map[string]string{"kind": "host_path", "path": h.src}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// process delivers m to one worker and waits until it settles.
func (h *harness) process(t *testing.T, m *fakeMsg) {
	t.Helper()
	h.d.process(m, "test.1", h.d.logger())
}

// diskRecord reads runs/<id>/run.json.
func (h *harness) diskRecord(t *testing.T, runID string) model.RunRecord {
	t.Helper()
	r, err := run.LoadRun(h.d.Runner.StateRoot, runID)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hasPrefix(got []string, want string) bool {
	return len(got) == 1 && strings.HasPrefix(got[0], want)
}

// waitUntil polls cond for up to 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errBoom = errors.New("incus: create instance: 500 boom")

func ptr[T any](v T) *T { return &v }
