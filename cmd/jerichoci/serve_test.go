package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	"jerichoci/run"
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
			if c.daemon.Concurrency != 2 || c.queue.AckWait != time.Minute || c.nats.Listen != defaultNATSListen || c.nats.URL != "" {
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
		{name: "max ack pending below the slots",
			args: []string{"--concurrency", "8", "--max-ack-pending", "4"}, wantErr: []string{"max ack pending 4: must be at least the concurrency 8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultServeConfig()
			cfg.fromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.flags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg.finish()
			err := cfg.Validate()
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
		})
	}
}

// embeddedQueue starts the embedded server on a free port with the
// daemon's streams and buckets, as `serve` does, but without workers.
func embeddedQueue(t *testing.T) (string, *run.Queue, *nats.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	srv, err := startEmbedded(listen, t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	q, err := run.OpenQueue(t.Context(), nc, run.DefaultQueueConfig())
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), q, nc
}

func TestEmbeddedServerRefusesATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = startEmbedded(l.Addr().String(), t.TempDir(), zaptest.NewLogger(t))
	if err == nil || !strings.Contains(err.Error(), "is another jerichoci serve running?") {
		t.Errorf("startEmbedded on a taken port = %v", err)
	}
}

func TestEnqueuePublishesASpecAndTheSource(t *testing.T) {
	url, q, nc := embeddedQueue(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"JERICHOCI_NATS_URL": url}
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
			stdout, stderr, code := runCatalogCLI(t, env, tc.args...)
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
			if m.Subject() != run.JobSubject("demo-pass") {
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
				if hex.EncodeToString(sum[:]) != spec.Source.SHA256 || spec.Source.Object != run.SourceObjectName(spec.Source.SHA256) {
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
		{[]string{"cancel", "a.b"}, `job id "a.b": expected a job id`},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := runCatalogCLI(t, map[string]string{"JERICHOCI_NATS_URL": "nats://127.0.0.1:1"}, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant 2 and %q", code, stderr, tc.stderr)
			}
		})
	}
}

type stubCanceller struct{ rep run.CancelReply }

func (s stubCanceller) Cancel(_ context.Context, jobID string) (run.CancelReply, error) {
	r := s.rep
	r.JobID = jobID
	return r, nil
}

func TestCancelAsksTheDaemons(t *testing.T) {
	url, q, _ := embeddedQueue(t)
	env := map[string]string{"JERICHOCI_NATS_URL": url}
	if _, stderr, code := runCatalogCLI(t, env, "cancel", "job-1", "--timeout", "5s"); code != exitUsage || !strings.Contains(stderr, "no daemon answers") {
		t.Errorf("cancel without a daemon: exit %d, stderr %q", code, stderr)
	}
	tests := []struct {
		rep  run.CancelReply
		code int
	}{
		{run.CancelReply{State: run.ClaimRunning, Message: "cancel requested; the job stops and is recorded as cancelled"}, exitOK},
		{run.CancelReply{State: run.ClaimFinished, Message: "already finished (passed); nothing to cancel"}, exitFailed},
	}
	for _, tc := range tests {
		t.Run(string(tc.rep.State), func(t *testing.T) {
			sub, err := q.SubscribeCancels(stubCanceller{tc.rep}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			stdout, stderr, code := runCatalogCLI(t, env, "cancel", "job-1", "--timeout", "5s")
			if code != tc.code || stdout != fmt.Sprintf("job job-1: %s\n", tc.rep.Message) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d", code, stdout, stderr, tc.code)
			}
		})
	}
}

func TestEnqueueWaitPrintsTheFinalRecord(t *testing.T) {
	url, q, nc := embeddedQueue(t)
	src := t.TempDir()
	// A stand-in daemon: take the job, publish its events, store its result.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		m, err := q.Next(ctx)
		if err != nil {
			return
		}
		spec, err := model.ParseJobSpec(m.Data())
		if err != nil {
			return
		}
		key, runID := spec.JobID.String(), "20260101T000000Z-0000abcd"
		rec := model.RunRecord{RunID: runID, Status: model.StatusFailed, SourceRoot: src, Message: new("test command exited with 3"),
			ChangedFiles: []string{}, Filters: []string{}, PrepareTimings: []model.PrepareTimingRecord{}, Jobs: []model.JobRecord{}}
		for _, ev := range []model.LifecycleEvent{model.RunStartedEvent(&rec)} {
			b, _ := json.Marshal(ev)
			h := nats.Header{}
			h.Set(run.HeaderEvent, ev.Event)
			_ = nc.PublishMsg(&nats.Msg{Subject: run.EventSubject(key, runID), Data: b, Header: h})
		}
		b, _ := json.Marshal(rec)
		_, _ = q.Results.Create(ctx, key, b)
		_ = m.DoubleAck(ctx)
	}()
	stdout, stderr, code := runCatalogCLI(t, map[string]string{"JERICHOCI_NATS_URL": url},
		"enqueue", "demo-fail", "--source", src, "--host-path", "--wait", "--timeout", "30s", "--output", "jsonl")
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"event":"run_started"`) || !strings.HasPrefix(lines[1], `{"event":"run_finished","run":{"run_id":"20260101T000000Z-0000abcd","status":"failed"`) {
		t.Errorf("stdout:\n%s", stdout)
	}
}
