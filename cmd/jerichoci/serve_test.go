package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"jerichoci/model"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

func TestServeConfigPrecedenceAndValidation(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(t *testing.T, c serveConfig)
		wantErr []string // substrings; all must be reported at once
	}{
		{name: "defaults", check: func(t *testing.T, c serveConfig) {
			if c.daemon.Concurrency != 2 || c.queue.AckWait != 10*time.Second || c.nats.Listen != defaultNATSListen || c.nats.URL != "" {
				t.Errorf("defaults = %+v %+v %+v", c.daemon, c.queue, c.nats)
			}
		}},
		{name: "env over defaults, flags over env",
			env:  map[string]string{"JERICHOCI_CONCURRENCY": "5", "JERICHOCI_ACK_WAIT": "90s", "JERICHOCI_NATS_URL": "nats://a:4222"},
			args: []string{"--concurrency", "3"},
			check: func(t *testing.T, c serveConfig) {
				if c.daemon.Concurrency != 3 || c.queue.AckWait != 90*time.Second || c.daemon.AckWait != 90*time.Second || c.nats.URL != "nats://a:4222" {
					t.Errorf("got concurrency %d, ack wait %s/%s, url %q", c.daemon.Concurrency, c.queue.AckWait, c.daemon.AckWait, c.nats.URL)
				}
			}},
		{name: "every problem at once",
			env:  map[string]string{"JERICHOCI_ACK_WAIT": "soon", "JERICHOCI_NATS_TLS_CERT": "/nonexistent/cert.pem"},
			args: []string{"--concurrency", "0", "--max-deliver", "0", "--nats-listen", "nohost"},
			wantErr: []string{`JERICHOCI_ACK_WAIT="soon": expected a duration`, "concurrency 0: must be at least 1",
				"max deliver 0: must be at least 1", "--nats-tls-cert and --nats-tls-key go together",
				"--nats-tls-cert: stat /nonexistent/cert.pem", `--nats-listen "nohost": expected HOST:PORT`}},
		{name: "a non-loopback embedded server needs TLS or --nats-insecure-listen",
			args: []string{"--nats-listen", "0.0.0.0:4222"}, wantErr: []string{`--nats-listen "0.0.0.0:4222" is not a loopback address`, "--nats-insecure-listen"}},
		{name: "--nats-insecure-listen allows it", args: []string{"--nats-listen", "0.0.0.0:4222", "--nats-insecure-listen"},
			check: func(t *testing.T, c serveConfig) {}},
		{name: "a loopback name is fine", args: []string{"--nats-listen", "localhost:4222"}, check: func(t *testing.T, c serveConfig) {}},
		{name: "source limits, results and runs from env and flags",
			env:  map[string]string{"JERICHOCI_MAX_SOURCE_BYTES": "64MiB", "JERICHOCI_KEEP_RESULTS": "48h", "JERICHOCI_HOST_PATH_ROOT": "/srv"},
			args: []string{"--max-source-entries", "10", "--keep-runs", "5", "--precancel-ttl", "30s"},
			check: func(t *testing.T, c serveConfig) {
				if c.daemon.SourceLimits.MaxBytes != 64<<20 || c.daemon.SourceLimits.MaxEntries != 10 || c.queue.KeepResults != 48*time.Hour ||
					c.daemon.HostPathRoot != "/srv" || c.daemon.KeepRuns != 5 || c.daemon.PrecancelTTL != 30*time.Second {
					t.Errorf("got %+v, keep results %s", c.daemon, c.queue.KeepResults)
				}
			}},
		{name: "bad limits are named",
			env:     map[string]string{"JERICHOCI_MAX_SOURCE_BYTES": "lots"},
			args:    []string{"--keep-runs", "-1", "--keep-results", "1s", "--max-source-entries", "0"},
			wantErr: []string{`JERICHOCI_MAX_SOURCE_BYTES: "lots" is not a size`, "keep runs -1: must not be negative", "keep results 1s: must be at least 1m", "source limits"}},
		{name: "replicas: 1 by default, env over it, flag over env",
			check: func(t *testing.T, c serveConfig) {
				if c.queue.Replicas != 1 {
					t.Errorf("default replicas %d, want 1", c.queue.Replicas)
				}
				for _, tc := range []struct {
					env  map[string]string
					args []string
					want int
				}{
					{map[string]string{"JERICHOCI_REPLICAS": "3", "JERICHOCI_NATS_URL": "nats://a:4222,nats://b:4222,nats://c:4222"}, nil, 3},
					{map[string]string{"JERICHOCI_REPLICAS": "3"}, []string{"--nats-url", "nats://a:4222,nats://b:4222", "--replicas", "2"}, 2},
					{map[string]string{"JERICHOCI_REPLICAS": " "}, nil, 1},
				} {
					c, err := parseServe(t, tc.env, tc.args...)
					if err != nil || c.queue.Replicas != tc.want {
						t.Errorf("env %v, args %q: replicas %d (Validate %v), want %d", tc.env, tc.args, c.queue.Replicas, err, tc.want)
					}
				}
			}},
		{name: "replicas out of range name the flag once, with every other problem",
			env:     map[string]string{"JERICHOCI_NATS_URL": "nats://a:4222"},
			args:    []string{"--replicas", "6", "--concurrency", "0"},
			wantErr: []string{"--replicas 6 (env JERICHOCI_REPLICAS): expected 1 to 5", "concurrency 0: must be at least 1"},
			check: func(t *testing.T, c serveConfig) {
				if err := c.Validate().Error(); strings.Count(err, "expected 1 to 5") != 1 {
					t.Errorf("the range is reported %d times:\n%s", strings.Count(err, "expected 1 to 5"), err)
				}
			}},
		{name: "replicas 0", env: map[string]string{"JERICHOCI_NATS_URL": "nats://a:4222"}, args: []string{"--replicas", "0"},
			wantErr: []string{"--replicas 0 (env JERICHOCI_REPLICAS): expected 1 to 5"}},
		{name: "replicas not a number", env: map[string]string{"JERICHOCI_REPLICAS": "three"},
			wantErr: []string{`JERICHOCI_REPLICAS="three": expected an integer`}},
		{name: "more than 1 replica needs a NATS cluster, not the embedded server", args: []string{"--replicas", "3"},
			wantErr: []string{"--replicas 3: the embedded NATS server is a single server", "--nats-url"}},
		{name: "metrics listener not HOST:PORT", args: []string{"--http-listen", "4280"},
			wantErr: []string{`--http-listen "4280" (env JERICHOCI_HTTP_LISTEN): expected HOST:PORT, or empty to disable`}},
		{name: "secret env names from env", env: map[string]string{"JERICHOCI_SECRET_ENV": "A_TOKEN, B"},
			check: func(t *testing.T, c serveConfig) {
				if got := strings.Join(c.secretEnv, ","); got != "A_TOKEN,B" {
					t.Errorf("secretEnv = %s", got)
				}
			}},
		{name: "repeated secret env flags replace the env's list", env: map[string]string{"JERICHOCI_SECRET_ENV": "A_TOKEN, B"},
			args: []string{"--secret-env", "C", "--secret-env", "D,E"},
			check: func(t *testing.T, c serveConfig) {
				if got := strings.Join(c.secretEnv, ","); got != "C,D,E" {
					t.Errorf("secretEnv = %s", got)
				}
			}},
		{name: "secret env names checked", args: []string{"--secret-env", "bad-name,PATH"},
			wantErr: []string{`--secret-env "bad-name" (env JERICHOCI_SECRET_ENV): expected an environment variable name`,
				`--secret-env "PATH" (env JERICHOCI_SECRET_ENV): "PATH" is set by the guest runner`}},
		{name: "warm pool size below -1", args: []string{"--warm", "-2"},
			wantErr: []string{"warm pool size -2: expected a number >= 0 (or -1 for the concurrency)"}},
		{name: "warm pool size from the environment, the flag wins", env: map[string]string{"JERICHOCI_WARM": "3"}, args: []string{"--warm", "1"},
			check: func(t *testing.T, c serveConfig) {
				if c.warm != 1 {
					t.Errorf("warm = %d, want the flag's 1", c.warm)
				}
			}},
		{name: "max ack pending below the slots",
			args: []string{"--concurrency", "8", "--max-ack-pending", "4"}, wantErr: []string{"max ack pending 4: must be at least the concurrency 8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseServe(t, tc.env, tc.args...)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				tc.check(t, cfg)
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want errors")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nmissing %q", err, w)
				}
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

// embeddedQueue starts the embedded server on a free port with the
// daemon's streams and buckets, as `serve` does, but without workers.
// The environment it returns points a client command at the server with
// the server's credentials.
func embeddedQueue(t *testing.T) (map[string]string, *daemon.Queue, *nats.Conn) {
	t.Helper()
	env, q, nc, _ := embeddedQueueIn(t)
	return env, q, nc
}

// embeddedQueueIn is embeddedQueue that also returns the state root, where
// the users' credentials are.
func embeddedQueueIn(t *testing.T) (map[string]string, *daemon.Queue, *nats.Conn, string) {
	t.Helper()
	listen, state, users := testEmbeddedUsers(t)
	srv := startTestEmbedded(t, listen, state, users)
	// As serve: the admin sets up, the worker runs the queue.
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(users.Admin.User, users.Admin.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := daemon.OpenQueue(t.Context(), nc, daemon.DefaultQueueConfig()); err != nil {
		t.Fatal(err)
	}
	w := users.Roles[protocol.RoleWorker]
	wnc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(w.User, w.Password), nats.CustomInboxPrefix(protocol.WorkerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wnc.Close)
	q, err := daemon.OpenQueue(t.Context(), wnc, daemon.DefaultQueueConfig())
	if err != nil {
		t.Fatal(err)
	}
	cr := users.Roles[protocol.RoleClient]
	return map[string]string{"JERICHOCI_NATS_URL": srv.ClientURL(), "JERICHOCI_NATS_USER": cr.User, "JERICHOCI_NATS_PASSWORD": cr.Password}, q, nc, state
}

func TestEmbeddedServerRefusesATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = startEmbedded(embeddedOptions{Listen: l.Addr().String(), StoreDir: t.TempDir(),
		Users: embeddedUsers{Admin: credentials{User: "u", Password: "p"}}}, zaptest.NewLogger(t))
	if err == nil || !strings.Contains(err.Error(), "is another jerichoci serve running?") {
		t.Errorf("startEmbedded on a taken port = %v", err)
	}
}

func TestEnqueuePublishesASpecAndTheSource(t *testing.T) {
	natsEnv, q, nc := embeddedQueue(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := natsEnv
	tests := []struct {
		name string
		args []string
		kind model.SourceKind
	}{
		{"object store", []string{"enqueue", "demo-pass", "--source", src, "--catalog", "../../jerichoci.lanes.json"}, model.SourceObjectStore},
		{"host path", []string{"enqueue", "demo-pass", "--source", src, "--host-path", "--catalog", "../../jerichoci.lanes.json"}, model.SourceHostPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLIEnv(t, env, tc.args...)
			if code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			jobID := strings.TrimSpace(stdout)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			next, err := q.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := next.(jetstream.Msg)
			if got := m.Headers().Get(jetstream.MsgIDHeader); got != jobID {
				t.Errorf("Nats-Msg-Id = %q, want the job id %q", got, jobID)
			}
			if m.Subject() != protocol.JobSubject("demo-pass") {
				t.Errorf("subject = %q", m.Subject())
			}
			spec, err := model.ParseJobSpec(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if spec.JobID.String() != jobID || spec.Target != "demo-pass" || spec.Source.Kind != tc.kind {
				t.Errorf("spec = %+v", spec)
			}
			if tc.kind == model.SourceObjectStore {
				obj, err := js.ObjectStore(t.Context(), spec.Source.Bucket)
				if err != nil {
					t.Fatal(err)
				}
				b, err := obj.GetBytes(t.Context(), spec.Source.Object)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(b)
				if hex.EncodeToString(sum[:]) != spec.Source.SHA256 || !strings.HasPrefix(spec.Source.Object, "sha256-"+spec.Source.SHA256+"-") {
					t.Errorf("object %s does not match its digest %s", spec.Source.Object, spec.Source.SHA256)
				}
			}
			_ = m.Ack()
		})
	}
}

func TestEnqueueUsageErrors(t *testing.T) {
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"enqueue"}, "expected exactly one LANE or TARGET, got 0 arguments"},
		{[]string{"enqueue", "demo-pass", "--job-id", "42"}, `--job-id "42": expected a UUID`},
		{[]string{"enqueue", "demo-pass", "--output", "xml"}, `--output: expected text or jsonl, got "xml"`},
		{[]string{"enqueue", "demo-pass", "--source", "/nonexistent/src"}, `--source "/nonexistent/src"`},
		{[]string{"cancel"}, "expected exactly one JOB_ID, got 0 arguments"},
		{[]string{"cancel", "a.b"}, `job id "a.b": expected a lowercase UUID`},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := runCLIEnv(t, map[string]string{"JERICHOCI_NATS_URL": "nats://127.0.0.1:1"}, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant 2 and %q", code, stderr, tc.stderr)
			}
		})
	}
}

type stubCanceller struct{ rep protocol.CancelReply }

func (s stubCanceller) Cancel(_ context.Context, jobID string) (protocol.CancelReply, error) {
	r := s.rep
	r.JobID = jobID
	return r, nil
}

func TestCancelAsksTheDaemons(t *testing.T) {
	natsEnv, q, _ := embeddedQueue(t)
	env := natsEnv
	const jobID = "0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11"
	if _, stderr, code := runCLIEnv(t, env, "cancel", "job-1"); code != exitUsage || !strings.Contains(stderr, `job id "job-1": expected a lowercase UUID`) {
		t.Errorf("cancel job-1: exit %d, stderr %q; want 2 naming the id and a lowercase UUID", code, stderr)
	}
	if _, stderr, code := runCLIEnv(t, env, "cancel", jobID, "--timeout", "5s"); code != exitUsage || !strings.Contains(stderr, "no daemon answers") {
		t.Errorf("cancel without a daemon: exit %d, stderr %q", code, stderr)
	}
	tests := []struct {
		rep  protocol.CancelReply
		code int
	}{
		{protocol.CancelReply{State: protocol.ClaimRunning, Message: "cancel requested; the job stops and is recorded as cancelled"}, exitOK},
		{protocol.CancelReply{State: protocol.ClaimFinished, Message: "already finished (passed); nothing to cancel"}, exitFailed},
	}
	for _, tc := range tests {
		t.Run(string(tc.rep.State), func(t *testing.T) {
			sub, err := q.SubscribeCancels(stubCanceller{tc.rep}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			stdout, stderr, code := runCLIEnv(t, env, "cancel", jobID, "--timeout", "5s")
			if code != tc.code || stdout != fmt.Sprintf("job %s: %s\n", jobID, tc.rep.Message) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d", code, stdout, stderr, tc.code)
			}
		})
	}
}

func TestEnqueueWaitPrintsTheFinalRecord(t *testing.T) {
	natsEnv, q, nc := embeddedQueue(t)
	src := t.TempDir()
	// A stand-in daemon: take the job, publish its events, store its result.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		m, err := q.Next(ctx)
		if err != nil {
			t.Logf("stand-in daemon: next: %v", err)
			return
		}
		spec, err := model.ParseJobSpec(m.Data())
		if err != nil {
			t.Logf("stand-in daemon: %v", err)
			return
		}
		t.Logf("stand-in daemon: took job %s", spec.JobID)
		key, runID := spec.JobID.String(), "20260101T000000Z-0000abcd"
		rec := model.RunRecord{RunID: runID, Status: model.StatusFailed, SourceRoot: src, Message: new("test command exited with 3"),
			ChangedFiles: []string{}, Filters: []string{}, PrepareTimings: []model.PrepareTimingRecord{}, Jobs: []model.JobRecord{}}
		for _, ev := range []model.LifecycleEvent{model.RunStartedEvent(&rec)} {
			b, _ := json.Marshal(ev)
			h := nats.Header{}
			h.Set(protocol.HeaderEvent, ev.Event)
			// As the daemon sets it: a watch takes only events naming its job.
			h.Set(protocol.HeaderJobID, key)
			_ = nc.PublishMsg(&nats.Msg{Subject: protocol.EventSubject(key, runID), Data: b, Header: h})
		}
		b, _ := json.Marshal(rec)
		if _, err := q.Results.Create(ctx, key, b); err != nil {
			t.Logf("stand-in daemon: store the result: %v", err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Logf("stand-in daemon: ack: %v", err)
		}
		t.Logf("stand-in daemon: done")
	}()
	// The stand-in knows demo-fail, which the built-in catalog lacks: enqueue asks it.
	catSub, err := q.SubscribeCatalog(func() protocol.CatalogReply {
		return protocol.CatalogReply{Daemon: "stand-in", Catalog: "test", Targets: []protocol.CatalogEntry{{ID: "demo-fail", Jobs: 1}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer catSub.Unsubscribe()
	stdout, stderr, code := runCLIEnv(t, natsEnv,
		"enqueue", "demo-fail", "--source", src, "--host-path", "--wait", "--timeout", "30s", "--output", "jsonl")
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"event":"run_started"`) || !strings.HasPrefix(lines[1], `{"event":"run_finished","run":{"run_id":"20260101T000000Z-0000abcd","status":"failed"`) {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestEmbeddedServerRefusesAnonymousClients(t *testing.T) {
	natsEnv, _, _ := embeddedQueue(t)
	url := natsEnv["JERICHOCI_NATS_URL"]
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to the embedded server")
	} else if !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("anonymous connect: %v, want an authorization violation", err)
	}
	if nc, err := nats.Connect(url, nats.UserInfo(natsEnv["JERICHOCI_NATS_USER"], "wrong")); err == nil {
		nc.Close()
		t.Fatal("a client with a wrong password connected")
	}
}

func TestEmbeddedCredentialsAreKeptAndPrivate(t *testing.T) {
	state := t.TempDir()
	firstUsers, err := embeddedCredentials(state, "nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	againUsers, err := embeddedCredentials(state, "nats://127.0.0.1:4333")
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range protocol.Roles() {
		first, again := firstUsers.Roles[role], againUsers.Roles[role]
		if first.Password == "" || again.Password != first.Password || again.User != first.User || again.URL != "nats://127.0.0.1:4333" || first.User != string(role) {
			t.Errorf("%s, second start: %+v, first %+v: want the user %s and the same password with the new URL", role, again, first, role)
		}
		p := roleCredentialsPath(state, role)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	// The admin's password is new at every start and written nowhere.
	if a, b := firstUsers.Admin, againUsers.Admin; a.Password == "" || a.Password == b.Password {
		t.Errorf("admin passwords %q and %q: want a new one at every start", a.Password, b.Password)
	}
	err = filepath.WalkDir(state, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && (strings.Contains(string(b), againUsers.Admin.Password) || strings.Contains(string(b), firstUsers.Admin.Password)) {
			t.Errorf("%s holds the admin's password", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	first := firstUsers.Roles[protocol.RoleClient]
	fi, err := os.Stat(filepath.Dir(credentialsPath(state)))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, want 0700", filepath.Dir(credentialsPath(state)), fi.Mode().Perm())
	}
	tests := []struct {
		name     string
		cfg      natsConfig
		wantURL  string
		wantUser string
	}{
		{"no URL: the file's URL and user", natsConfig{StateRoot: state}, "nats://127.0.0.1:4333", first.User},
		{"the same URL: the file's user", natsConfig{StateRoot: state, URL: "nats://127.0.0.1:4333"}, "nats://127.0.0.1:4333", first.User},
		{"another server never gets them", natsConfig{StateRoot: state, URL: "nats://elsewhere:4222"}, "nats://elsewhere:4222", ""},
		{"explicit auth wins", natsConfig{StateRoot: state, User: "me"}, "", "me"},
		{"no file: nothing changes", natsConfig{StateRoot: t.TempDir()}, "", ""},
	}
	for _, tc := range tests {
		c := tc.cfg
		if err := c.useStateCredentials(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.URL != tc.wantURL || c.User != tc.wantUser {
			t.Errorf("%s: url %q user %q, want %q %q", tc.name, c.URL, c.User, tc.wantURL, tc.wantUser)
		}
	}
}
