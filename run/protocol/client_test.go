package protocol_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

// startServer runs an in-process nats-server with JetStream. With queue,
// the daemon's streams and buckets are created as `serve` creates them.
func startServer(t *testing.T, queue bool) (*nats.Conn, *daemon.Queue) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if !queue {
		return nc, nil
	}
	q, err := daemon.OpenQueue(t.Context(), nc, daemon.DefaultQueueConfig())
	if err != nil {
		t.Fatal(err)
	}
	return nc, q
}

func newClient(t *testing.T, nc *nats.Conn) *protocol.Client {
	t.Helper()
	c, err := protocol.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewClientNeedsAConnection(t *testing.T) {
	if _, err := protocol.NewClient(nil); err == nil {
		t.Error("NewClient(nil) succeeded")
	}
}

func TestUploadSource(t *testing.T) {
	nc, _ := startServer(t, true)
	c := newClient(t, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := js.ObjectStore(t.Context(), protocol.BucketSources)
	if err != nil {
		t.Fatal(err)
	}
	// More than one chunk, not a multiple of it.
	tarball := bytes.Repeat([]byte("not really a tar.gz, but the store does not care\n"), 6000)
	sum := sha256.Sum256(tarball)
	digest := hex.EncodeToString(sum[:])
	other := strings.Repeat("0", 64)
	names := regexp.MustCompile(`^sha256-([0-9a-f]{64})-[0-9a-f]{32}\.tar\.gz$`)
	tests := []struct {
		name    string
		tarball io.Reader
		digest  string
		wantErr string // empty: success, stored under a new name
	}{
		{name: "a new source is stored under its digest and a random part", tarball: bytes.NewReader(tarball), digest: digest},
		{name: "the same source again gets a name of its own", tarball: bytes.NewReader(tarball), digest: digest},
		{name: "a tarball that is not its digest is not stored", tarball: bytes.NewReader(tarball), digest: other,
			wantErr: "the tarball's SHA-256 is " + digest + ", not " + other},
		{name: "a digest that is not one", tarball: bytes.NewReader(tarball), digest: "ABC", wantErr: `source digest "ABC": expected the 64-character lowercase hex SHA-256`},
		{name: "a read error", tarball: io.MultiReader(bytes.NewReader(tarball), iotestErrReader{}), digest: strings.Repeat("1", 64),
			wantErr: "upload source: read the tarball: disk on fire"},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := c.UploadSource(t.Context(), tc.tarball, tc.digest, "test source")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("UploadSource = %+v, %v; want an error with %q", ref, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m := names.FindStringSubmatch(ref.Object); m == nil || m[1] != tc.digest {
				t.Errorf("UploadSource stored %q, want sha256-%s-<32 hex digits>.tar.gz", ref.Object, tc.digest)
			}
			if seen[ref.Object] {
				t.Errorf("UploadSource used the name %s twice", ref.Object)
			}
			seen[ref.Object] = true
			want := model.SourceRef{Kind: model.SourceObjectStore, Bucket: protocol.BucketSources, Object: ref.Object, SHA256: tc.digest}
			if ref != want {
				t.Errorf("UploadSource = %+v, want %+v", ref, want)
			}
			// nats.go's object store reads it back, digest and all.
			if b, err := obj.GetBytes(t.Context(), ref.Object); err != nil || !bytes.Equal(b, tarball) {
				t.Errorf("object %s = %d bytes, %v; want the tarball's %d", ref.Object, len(b), err, len(tarball))
			}
		})
	}
	// Only the good uploads left an object.
	list, err := obj.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range list {
		if !seen[info.Name] {
			t.Errorf("object %s is stored, want only %v", info.Name, seen)
		}
	}
	if len(list) != len(seen) || len(seen) != 2 {
		t.Errorf("%d objects stored, %d uploads succeeded; want 2 and 2", len(list), len(seen))
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestUploadSourceWithoutTheBucket(t *testing.T) {
	nc, _ := startServer(t, false)
	_, err := newClient(t, nc).UploadSource(t.Context(), strings.NewReader("x"), strings.Repeat("a", 64), "")
	if err == nil || !strings.Contains(err.Error(), "upload source to jerichoci-sources: ") || !strings.Contains(err.Error(), "start jerichoci serve once") {
		t.Errorf("UploadSource without the bucket = %v", err)
	}
}

func testSpec(name string) model.JobSpec {
	return model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: uuid.New(), Target: name,
		Source: model.SourceRef{Kind: model.SourceHostPath, Path: "/srv/src"}, ChangedFiles: []string{}, Requester: "client test"}
}

func TestEnqueue(t *testing.T) {
	nc, q := startServer(t, true)
	c := newClient(t, nc)
	queued := testSpec("demo-pass")
	lane := testSpec("check-pika-rust")
	lane.Lane, lane.Target = lane.Target, ""
	lane.Runtime = &model.RuntimeConfig{Kind: model.RuntimeIncus, Incus: &model.IncusRuntime{GuestRole: model.RolePikaciRunner}}
	lane.ChangedFiles = []string{"rust/src/lib.rs"}
	badName := testSpec("demo pass")
	badVersion := testSpec("demo-pass")
	badVersion.SchemaVersion = 0
	tests := []struct {
		name      string
		spec      model.JobSpec
		duplicate bool
		wantErr   string // empty: published
	}{
		{name: "a target", spec: queued},
		{name: "the same job again is a duplicate", spec: queued, duplicate: true},
		{name: "a lane with a runtime", spec: lane},
		{name: "a bad name is not published", spec: badName, wantErr: "invalid job spec: field `target`"},
		{name: "a bad schema version is not published", spec: badVersion, wantErr: "invalid job spec: field `schema_version`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Enqueue(t.Context(), tc.spec)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, model.ErrInvalidSpec) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Enqueue = %+v, %v; want %q wrapping ErrInvalidSpec", res, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Duplicate != tc.duplicate || res.Stream != protocol.StreamJobs || res.Sequence == 0 || res.Subject != protocol.JobSubject(tc.spec.Name()) {
				t.Errorf("Enqueue = %+v, want duplicate %v on %s", res, tc.duplicate, protocol.JobSubject(tc.spec.Name()))
			}
			if tc.duplicate {
				return
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			next, err := q.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := next.(jetstream.Msg)
			defer func() { _ = m.Ack() }()
			if m.Subject() != protocol.JobSubject(tc.spec.Name()) || m.Headers().Get(jetstream.MsgIDHeader) != tc.spec.JobID.String() {
				t.Errorf("message on %s with Nats-Msg-Id %q", m.Subject(), m.Headers().Get(jetstream.MsgIDHeader))
			}
			got, err := model.ParseJobSpec(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.spec) {
				t.Errorf("published spec:\n got %+v\nwant %+v", got, tc.spec)
			}
		})
	}
	// Nothing else was published: not the duplicate, not the invalid specs.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if m, err := q.Next(ctx); err == nil {
		t.Errorf("an unexpected message was queued: %s", m.Data())
	}
}

func TestEnqueueWithoutTheStream(t *testing.T) {
	nc, _ := startServer(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := newClient(t, nc).Enqueue(ctx, testSpec("demo-pass"))
	if err == nil || !strings.HasPrefix(err.Error(), "publish job: ") || !strings.Contains(err.Error(), "no stream takes jerichoci.jobs.demo-pass: is jerichoci serve running?") {
		t.Errorf("Enqueue without the stream = %v", err)
	}
}

type stubCanceller struct {
	rep protocol.CancelReply
	err error
}

func (s stubCanceller) Cancel(_ context.Context, jobID string) (protocol.CancelReply, error) {
	r := s.rep
	r.JobID = jobID
	return r, s.err
}

func TestCancel(t *testing.T) {
	nc, q := startServer(t, true)
	c := newClient(t, nc)
	jobID := uuid.NewString()
	running := protocol.CancelReply{JobID: jobID, State: protocol.ClaimRunning, RunID: "20260101T000000Z-0000abcd", Message: "cancel requested"}
	tests := []struct {
		name    string
		answer  func(*testing.T) // starts the responder, if any
		jobID   string
		want    protocol.CancelReply
		wantErr string
		noOne   bool // the error wraps ErrNoDaemon
	}{
		{name: "no daemon", jobID: jobID, noOne: true,
			wantErr: "no daemon answers on jerichoci.cancel." + jobID + ": is jerichoci serve running?"},
		{name: "a daemon answers", jobID: jobID, want: running,
			answer: func(t *testing.T) { subscribeCancels(t, q, stubCanceller{rep: running}) }},
		{name: "a daemon's error", jobID: jobID, want: protocol.CancelReply{JobID: jobID, Error: "cancel " + jobID + ": claims unavailable"},
			answer: func(t *testing.T) {
				subscribeCancels(t, q, stubCanceller{err: fmt.Errorf("cancel %s: claims unavailable", jobID)})
			},
			wantErr: "cancel " + jobID + ": cancel " + jobID + ": claims unavailable"},
		{name: "an unreadable answer", jobID: jobID, wantErr: "cancel " + jobID + `: unreadable reply "no json"`,
			answer: func(t *testing.T) {
				sub, err := nc.Subscribe(protocol.SubjectCancelPrefix+"*", func(m *nats.Msg) { _ = m.Respond([]byte("no json")) })
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = sub.Unsubscribe() })
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "not a job id", jobID: "a.>", wantErr: `cancel: job id "a.>": expected a lowercase UUID of 36 characters such as "0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.answer != nil {
				tc.answer(t)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			rep, err := c.Cancel(ctx, tc.jobID)
			if rep != tc.want {
				t.Errorf("Cancel = %+v, want %+v", rep, tc.want)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Cancel error %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Cancel error %v, want %q", err, tc.wantErr)
			}
			if errors.Is(err, protocol.ErrNoDaemon) != tc.noOne {
				t.Errorf("errors.Is(%v, ErrNoDaemon) = %v, want %v", err, !tc.noOne, tc.noOne)
			}
		})
	}
}

func subscribeCancels(t *testing.T, q *daemon.Queue, c daemon.Canceller) {
	t.Helper()
	sub, err := q.SubscribeCancels(c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// published is one event a stand-in daemon publishes.
type published struct {
	ev    model.LifecycleEvent
	final bool
}

func publishEvent(t *testing.T, nc *nats.Conn, jobID, runID string, p published) []byte {
	t.Helper()
	b, err := json.Marshal(p.ev)
	if err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	h.Set(protocol.HeaderJobID, jobID)
	h.Set(protocol.HeaderRunID, runID)
	h.Set(protocol.HeaderEvent, p.ev.Event)
	if p.final {
		h.Set(protocol.HeaderFinal, "true")
	}
	if err := nc.PublishMsg(&nats.Msg{Subject: protocol.EventSubject(jobID, runID), Data: b, Header: h}); err != nil {
		t.Fatal(err)
	}
	return b
}

func record(runID string, status model.RunStatus) model.RunRecord {
	return model.RunRecord{RunID: runID, Status: status, SourceRoot: "/srv/src", TargetID: new("demo-pass"), CreatedAt: model.At(time.Unix(1767225600, 0)),
		ChangedFiles: []string{}, Filters: []string{}, PrepareTimings: []model.PrepareTimingRecord{}, Jobs: []model.JobRecord{}}
}

func TestWatchDeliversTheEventsThenTheFinalRecord(t *testing.T) {
	nc, q := startServer(t, true)
	c := newClient(t, nc)
	jobID := uuid.NewString()
	w, err := c.Watch(t.Context(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	retried, final := record("20260101T000000Z-0000aaaa", model.StatusFailed), record("20260101T000001Z-0000bbbb", model.StatusPassed)
	job := model.JobRecord{ID: "hello", Status: model.StatusPassed, StartedAt: final.CreatedAt}
	var want [][]byte
	for _, p := range []struct {
		runID string
		published
	}{
		{retried.RunID, published{ev: model.RunStartedEvent(&retried)}},
		{retried.RunID, published{ev: model.RunFinishedEvent(retried)}}, // an attempt, not the result
		{final.RunID, published{ev: model.RunStartedEvent(&final)}},
		{final.RunID, published{ev: model.JobStartedEvent(final.RunID, job)}},
		{final.RunID, published{ev: model.JobFinishedEvent(final.RunID, job)}},
		{final.RunID, published{ev: model.RunFinishedEvent(final), final: true}},
	} {
		want = append(want, publishEvent(t, nc, jobID, p.runID, p.published))
	}
	// Not a lifecycle event: skipped. Another job's event: not ours.
	if err := nc.Publish(protocol.EventSubject(jobID, final.RunID), []byte(`{"event":"coffee_break"}`)); err != nil {
		t.Fatal(err)
	}
	publishEvent(t, nc, uuid.NewString(), final.RunID, published{ev: model.RunStartedEvent(&final)})
	b, err := json.Marshal(final)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Results.Create(t.Context(), jobID, b); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i, data := range want {
		u, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if u.Event == nil || u.Record != nil {
			t.Fatalf("update %d = %+v, want only an event", i, u)
		}
		if !bytes.Equal(u.Event.Data, data) || u.Event.Final != (i == len(want)-1) {
			t.Errorf("event %d = %s (final %v), want %s", i, u.Event.Data, u.Event.Final, data)
		}
		var ev model.LifecycleEvent
		_ = json.Unmarshal(data, &ev)
		if !reflect.DeepEqual(u.Event.LifecycleEvent, ev) {
			t.Errorf("event %d decoded as %+v, want %+v", i, u.Event.LifecycleEvent, ev)
		}
	}
	u, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Record == nil || u.Event != nil || u.Record.RunID != final.RunID || u.Record.Status != model.StatusPassed {
		t.Fatalf("last update = %+v, want only the final record of %s", u, final.RunID)
	}
	if _, err := w.Next(ctx); !errors.Is(err, protocol.ErrWatchDone) {
		t.Errorf("Next after the record = %v, want ErrWatchDone", err)
	}
	w.Stop() // twice is fine
}

func TestWatchFindsARecordStoredBeforeIt(t *testing.T) {
	nc, q := startServer(t, true)
	jobID := uuid.NewString()
	b, err := json.Marshal(record("20260101T000000Z-0000cccc", model.StatusFailed))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Results.Create(t.Context(), jobID, b); err != nil {
		t.Fatal(err)
	}
	w, err := newClient(t, nc).Watch(t.Context(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	u, err := w.Next(ctx)
	if err != nil || u.Record == nil || u.Record.Status != model.StatusFailed {
		t.Errorf("Next = %+v, %v; want the stored record", u, err)
	}
}

// TestWatchFindsARecordWithoutANotice: a watch that never hears of its
// key's change (the notice came before the stream stored the record, or
// was lost) still finds the record by reading the key again.
func TestWatchFindsARecordWithoutANotice(t *testing.T) {
	nc, q := startServer(t, true)
	jobID := uuid.NewString()
	w, err := newClient(t, nc).Watch(t.Context(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	protocol.DropKeyNotices(w)
	b, err := json.Marshal(record("20260101T000000Z-0000dddd", model.StatusPassed))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Results.Create(t.Context(), jobID, b); err != nil {
		t.Fatal(err)
	}
	// A bound for a broken watch, which would wait for ever; the watch
	// reads the key again within seconds.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	u, err := w.Next(ctx)
	if err != nil || u.Record == nil || u.Record.RunID != "20260101T000000Z-0000dddd" {
		t.Errorf("Next = %+v, %v; want the stored record", u, err)
	}
}

func TestWatchErrors(t *testing.T) {
	withQueue, _ := startServer(t, true)
	bare, _ := startServer(t, false)
	tests := []struct {
		name    string
		nc      *nats.Conn
		jobID   string
		wantErr string
	}{
		{"a job key that is no subject token", withQueue, "a.*", `watch job "a.*": expected 1 to 128 letters, digits, '_' or '-'`},
		{"no results bucket", bare, uuid.NewString(), "key-value bucket jerichoci-results: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := newClient(t, tc.nc).Watch(t.Context(), tc.jobID)
			if err == nil {
				w.Stop()
				t.Fatal("Watch succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Watch = %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("Next gives up with its context", func(t *testing.T) {
		w, err := newClient(t, withQueue).Watch(t.Context(), uuid.NewString())
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if _, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next = %v, want the deadline", err)
		}
	})
}
