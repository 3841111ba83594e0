package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

// usersServer is an embedded server with its users, set up by the admin
// as serve sets it up.
type usersServer struct {
	url   string
	users embeddedUsers
	admin *nats.Conn
	queue *daemon.Queue // the worker's
}

func startUsersServer(t *testing.T) usersServer {
	t.Helper()
	return startUsersServerWith(t, daemon.DefaultQueueConfig())
}

// startUsersServerWith is startUsersServer with the queue configured as
// cfg.
func startUsersServerWith(t *testing.T, cfg daemon.QueueConfig) usersServer {
	t.Helper()
	listen, state, users := testEmbeddedUsers(t)
	srv := startTestEmbedded(t, listen, state, users)
	s := usersServer{url: srv.ClientURL(), users: users}
	var err error
	s.admin, err = nats.Connect(s.url, nats.UserInfo(users.Admin.User, users.Admin.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.admin.Close)
	if _, err := daemon.OpenQueue(t.Context(), s.admin, cfg); err != nil {
		t.Fatal(err)
	}
	wnc, _ := s.connect(t, protocol.RoleWorker)
	if s.queue, err = daemon.OpenQueue(t.Context(), wnc, cfg); err != nil {
		t.Fatalf("the worker sets up the queue: %v", err)
	}
	return s
}

// connect connects as role and returns the permission violations the
// server reports to the connection.
func (s usersServer) connect(t *testing.T, role protocol.Role) (*nats.Conn, <-chan error) {
	t.Helper()
	cr := s.users.Roles[role]
	violations := make(chan error, 64)
	opts := []nats.Option{nats.UserInfo(cr.User, cr.Password), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case violations <- err:
			default:
			}
		}
	})}
	if role == protocol.RoleWorker {
		opts = append(opts, nats.CustomInboxPrefix(protocol.WorkerInboxPrefix))
	}
	nc, err := nats.Connect(s.url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, violations
}

// expectViolation runs op until the server reports that it refused verb
// ("Publish to" or "Subscription to") subject to the connection.
func expectViolation(t *testing.T, violations <-chan error, verb, subject string, op func(ctx context.Context) error) {
	t.Helper()
	want := "Permissions Violation for " + verb + " " + `"` + subject + `"`
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	bound := time.After(30 * time.Second)
	for {
		select {
		case err := <-violations:
			if strings.Contains(err.Error(), want) {
				cancel()
				<-done
				return
			}
			t.Logf("another violation: %v", err)
		case err := <-done:
			// The operation ended first: the refusal is on its way, or
			// it went through.
			if err == nil {
				t.Errorf("%s %s: the operation succeeded", verb, subject)
				cancel()
				return
			}
			done <- err
			select {
			case v := <-violations:
				if strings.Contains(v.Error(), want) {
					cancel()
					return
				}
				t.Errorf("%s %s: got %v, want %q", verb, subject, v, want)
			case <-bound:
				t.Errorf("%s %s: no permissions violation (the operation said %v)", verb, subject, err)
			}
			cancel()
			return
		case <-bound:
			t.Errorf("%s %s: no permissions violation within 30s", verb, subject)
			cancel()
			<-done
			return
		}
	}
}

func request(nc *nats.Conn, subject string, data []byte) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, subject, data)
		return err
	}
}

func subscribe(nc *nats.Conn, subject string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		sub, err := nc.Subscribe(subject, func(*nats.Msg) {})
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := nc.Flush(); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
}

// TestNATSUsersClientAndReaderAreRefused: with the client's (and the
// reader's) credentials the server refuses, as a permissions violation,
// every write that could forge or lose a result, every touch of the
// workers' consumer, every change of a stream, and every read of the
// sources; the state is unchanged afterwards.
func TestNATSUsersClientAndReaderAreRefused(t *testing.T) {
	s := startUsersServer(t)
	ajs, err := jetstream.New(s.admin)
	if err != nil {
		t.Fatal(err)
	}
	// A job waits in the work stream, and a source is stored.
	cnc, _ := s.connect(t, protocol.RoleClient)
	client, err := protocol.NewClient(cnc)
	if err != nil {
		t.Fatal(err)
	}
	spec := model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: uuid.New(), Target: "demo-fail",
		Source: model.SourceRef{Kind: model.SourceHostPath, Path: "/srv/src"}, ChangedFiles: []string{}}
	if _, err := client.Enqueue(t.Context(), spec); err != nil {
		t.Fatalf("the client queues a job: %v", err)
	}
	tarball := []byte("a source")
	sum := sha256.Sum256(tarball)
	ref, err := client.UploadSource(t.Context(), bytes.NewReader(tarball), hex.EncodeToString(sum[:]), "test")
	if err != nil {
		t.Fatalf("the client uploads a source: %v", err)
	}
	id := spec.JobID.String()
	forged, _ := json.Marshal(map[string]any{"schema_version": 1, "run_id": "forged", "status": "passed", "message": "forged"})
	name := base64.URLEncoding.EncodeToString([]byte(ref.Object))
	pull, _ := json.Marshal(map[string]any{"batch": 1, "expires": int64(time.Second)})
	consumer, _ := json.Marshal(map[string]any{"stream_name": protocol.StreamJobs, "config": map[string]any{"ack_policy": "explicit"}})
	for _, role := range []protocol.Role{protocol.RoleClient, protocol.RoleReader} {
		nc, violations := s.connect(t, role)
		tests := []struct {
			name, verb, subject string
			op                  func(ctx context.Context) error
		}{
			{"KV put on the results", "Publish to", "$KV.jerichoci-results." + id, request(nc, "$KV.jerichoci-results."+id, forged)},
			{"KV put on the claims", "Publish to", "$KV.jerichoci-jobs." + id, request(nc, "$KV.jerichoci-jobs."+id, []byte(`{"state":"finished"}`))},
			{"pull from the workers' consumer", "Publish to", "$JS.API.CONSUMER.MSG.NEXT.JERICHOCI_JOBS.jerichoci-workers",
				request(nc, "$JS.API.CONSUMER.MSG.NEXT.JERICHOCI_JOBS.jerichoci-workers", pull)},
			{"a consumer of its own on the work stream", "Publish to", "$JS.API.CONSUMER.CREATE.JERICHOCI_JOBS.mine",
				request(nc, "$JS.API.CONSUMER.CREATE.JERICHOCI_JOBS.mine", consumer)},
			{"delete the workers' consumer", "Publish to", "$JS.API.CONSUMER.DELETE.JERICHOCI_JOBS.jerichoci-workers",
				request(nc, "$JS.API.CONSUMER.DELETE.JERICHOCI_JOBS.jerichoci-workers", nil)},
			{"delete the work stream", "Publish to", "$JS.API.STREAM.DELETE.JERICHOCI_JOBS", request(nc, "$JS.API.STREAM.DELETE.JERICHOCI_JOBS", nil)},
			{"delete the results bucket", "Publish to", "$JS.API.STREAM.DELETE.KV_jerichoci-results", request(nc, "$JS.API.STREAM.DELETE.KV_jerichoci-results", nil)},
			{"purge the work stream", "Publish to", "$JS.API.STREAM.PURGE.JERICHOCI_JOBS", request(nc, "$JS.API.STREAM.PURGE.JERICHOCI_JOBS", nil)},
			{"purge the results bucket", "Publish to", "$JS.API.STREAM.PURGE.KV_jerichoci-results", request(nc, "$JS.API.STREAM.PURGE.KV_jerichoci-results", nil)},
			{"delete a job message", "Publish to", "$JS.API.STREAM.MSG.DELETE.JERICHOCI_JOBS", request(nc, "$JS.API.STREAM.MSG.DELETE.JERICHOCI_JOBS", []byte(`{"seq":1}`))},
			{"update a stream", "Publish to", "$JS.API.STREAM.UPDATE.KV_jerichoci-results", request(nc, "$JS.API.STREAM.UPDATE.KV_jerichoci-results", []byte(`{}`))},
			{"read a job message", "Publish to", "$JS.API.STREAM.MSG.GET.JERICHOCI_JOBS", request(nc, "$JS.API.STREAM.MSG.GET.JERICHOCI_JOBS", []byte(`{"seq":1}`))},
			{"list the sources", "Publish to", "$JS.API.STREAM.INFO.OBJ_jerichoci-sources", request(nc, "$JS.API.STREAM.INFO.OBJ_jerichoci-sources", []byte(`{"subjects_filter":">"}`))},
			{"read a source's description", "Publish to", "$JS.API.DIRECT.GET.OBJ_jerichoci-sources.$O.jerichoci-sources.M." + name,
				request(nc, "$JS.API.DIRECT.GET.OBJ_jerichoci-sources.$O.jerichoci-sources.M."+name, nil)},
			{"write a stored record", "Publish to", "$O.jerichoci-records.M.x", request(nc, "$O.jerichoci-records.M.x", []byte(`{}`))},
			{"see the job specs", "Subscription to", "jerichoci.jobs.>", subscribe(nc, "jerichoci.jobs.>")},
			{"see the uploads", "Subscription to", "$O.jerichoci-sources.>", subscribe(nc, "$O.jerichoci-sources.>")},
			{"see the worker's inbox", "Subscription to", protocol.WorkerInboxPrefix + ".>", subscribe(nc, protocol.WorkerInboxPrefix+".>")},
			{"see everything", "Subscription to", ">", subscribe(nc, ">")},
		}
		if role == protocol.RoleReader {
			tests = append(tests, []struct {
				name, verb, subject string
				op                  func(ctx context.Context) error
			}{
				{"queue a job", "Publish to", protocol.JobSubject("demo-pass"), request(nc, protocol.JobSubject("demo-pass"), []byte(`{}`))},
				{"ask for a cancel", "Publish to", protocol.SubjectCancelPrefix + id, request(nc, protocol.SubjectCancelPrefix+id, nil)},
				{"upload a chunk", "Publish to", "$O.jerichoci-sources.C.x", request(nc, "$O.jerichoci-sources.C.x", []byte("x"))},
				{"publish an event", "Publish to", protocol.EventSubject(id, "r"), request(nc, protocol.EventSubject(id, "r"), []byte("{}"))},
			}...)
		}
		for _, tc := range tests {
			t.Run(string(role)+": "+tc.name, func(t *testing.T) {
				expectViolation(t, violations, tc.verb, tc.subject, tc.op)
			})
		}
	}
	// Nothing changed: no result, the job still waits, the streams are there.
	results, err := ajs.KeyValue(t.Context(), protocol.BucketResults)
	if err != nil {
		t.Fatalf("the results bucket: %v", err)
	}
	if e, err := results.Get(t.Context(), id); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("results[%s] = %v, %v; want no record", id, e, err)
	}
	st, err := ajs.Stream(t.Context(), protocol.StreamJobs)
	if err != nil {
		t.Fatalf("the work stream: %v", err)
	}
	if info, err := st.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Errorf("the work stream holds %+v, %v; want the one job", info.State, err)
	}
	ci, err := ajs.Consumer(t.Context(), protocol.StreamJobs, protocol.ConsumerWorkers)
	if err != nil {
		t.Fatalf("the workers' consumer: %v", err)
	}
	if info, err := ci.Info(t.Context()); err != nil || info.NumPending != 1 || info.Delivered.Consumer != 0 {
		t.Errorf("the workers' consumer: %+v, %v; want the job pending, never delivered", info, err)
	}
	// The worker takes it.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m, err := s.queue.Next(ctx)
	if err != nil {
		t.Fatalf("the worker pulls the job: %v", err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Errorf("the worker acks the job: %v", err)
	}
}

// TestProtocolDocGivesTheNATSServerConfig: docs/PROTOCOL.md's nats-server
// configuration is the one rendered from the permissions the embedded
// server gives (test/daemon runs a nats-server from the document's text).
func TestProtocolDocGivesTheNATSServerConfig(t *testing.T) {
	b, err := os.ReadFile("../../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n```conf\n")
	conf, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/PROTOCOL.md has no ```conf block")
	}
	if want := natsServerConfig(); conf != want {
		t.Errorf("docs/PROTOCOL.md's configuration differs from natsServerConfig(); put this there:\n%s", want)
	}
}
