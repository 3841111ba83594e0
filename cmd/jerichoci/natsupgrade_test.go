package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

// TestEmbeddedServerKeepsAnOlderVersionsData: a store written by a version
// whose embedded server had no accounts (JetStream in the global account)
// still has its queued job and its results once serve's server, with the
// fleet's account, starts on it: nothing is lost on upgrade.
func TestEmbeddedServerKeepsAnOlderVersionsData(t *testing.T) {
	listen, state, users := testEmbeddedUsers(t)
	store := filepath.Join(state, "nats")

	// The older version: one user, no accounts.
	old, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: store, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go old.Start()
	if !old.ReadyForConnections(30 * time.Second) {
		t.Fatal("the older server did not start")
	}
	nc, err := nats.Connect(old.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg := daemon.DefaultQueueConfig()
	q, err := daemon.OpenQueue(t.Context(), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Results.Put(t.Context(), "job-done", []byte(`{"status":"passed"}`)); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), protocol.JobSubject("demo-pass"), []byte(`{"queued":"before the upgrade"}`)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()
	if _, err := os.Stat(filepath.Join(store, "jetstream", server.DEFAULT_GLOBAL_ACCOUNT)); err != nil {
		t.Fatalf("the older server left no global account data: %v", err)
	}

	// This version on the same store.
	srv := startTestEmbedded(t, listen, state, users)
	wnc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(users.Roles[protocol.RoleWorker].User, users.Roles[protocol.RoleWorker].Password), nats.CustomInboxPrefix(protocol.WorkerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer wnc.Close()
	wq, err := daemon.OpenQueue(t.Context(), wnc, cfg)
	if err != nil {
		t.Fatalf("the worker opens the upgraded queue: %v", err)
	}
	e, err := wq.Results.Get(t.Context(), "job-done")
	if err != nil || string(e.Value()) != `{"status":"passed"}` {
		t.Errorf("the older result after the upgrade: %v, %v", e, err)
	}
	wjs, err := jetstream.New(wnc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := wjs.Stream(t.Context(), protocol.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("the work stream holds %d messages after the upgrade, want the 1 queued before it", n)
	}
	if _, err := os.Stat(filepath.Join(store, "jetstream", server.DEFAULT_GLOBAL_ACCOUNT)); !os.IsNotExist(err) {
		t.Errorf("the global account's data is still there (%v): it was copied, not moved", err)
	}
}

// testEmbeddedUsers returns a free loopback HOST:PORT, a state root and the
// embedded server's users written under it, as serve makes them.
func testEmbeddedUsers(t *testing.T) (listen, state string, users embeddedUsers) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen = l.Addr().String()
	l.Close()
	state = t.TempDir()
	if users, err = embeddedCredentials(state, "nats://"+listen); err != nil {
		t.Fatal(err)
	}
	return listen, state, users
}

// startTestEmbedded starts serve's embedded server on listen with its
// store under state, until the test ends.
func startTestEmbedded(t *testing.T, listen, state string, users embeddedUsers) *server.Server {
	t.Helper()
	srv, err := startEmbedded(embeddedOptions{Listen: listen, StoreDir: filepath.Join(state, "nats"), Users: users}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}
