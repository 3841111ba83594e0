package main

// The client commands find their daemon, name unknown job ids and exit as
// README documents (issue #23: "the client finds its daemon", "typos, ids
// and exit codes"). Real embedded NATS server, real daemon lookups and
// cancels; no Incus needed.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"jerichoci/model"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

func TestDaemonFileLocations(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		euid int
		want []string
	}{
		{"root", map[string]string{"HOME": "/root", "XDG_RUNTIME_DIR": "/run/user/0"}, 0, []string{"/run/jerichoci/daemon.json"}},
		{"user with a runtime dir", map[string]string{"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000"}, 1000,
			[]string{"/run/user/1000/jerichoci/daemon.json", "/home/u/.local/state/jerichoci/daemon.json"}},
		{"user with XDG_STATE_HOME", map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": "/srv/state"}, 1000, []string{"/srv/state/jerichoci/daemon.json"}},
		{"relative XDG dirs are ignored", map[string]string{"HOME": "/home/u", "XDG_RUNTIME_DIR": "rel", "XDG_STATE_HOME": "rel"}, 1000,
			[]string{"/home/u/.local/state/jerichoci/daemon.json"}},
		{"no home", map[string]string{}, 1000, nil},
		{"named by the environment", map[string]string{envDaemonFile: "/tmp/d.json", "HOME": "/home/u"}, 0, []string{"/tmp/d.json"}},
		{"set but empty: none", map[string]string{envDaemonFile: "", "HOME": "/home/u"}, 1000, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := daemonFileLocations(mapEnv(tc.env), tc.euid)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("daemonFileLocations = %q, want %q", got, tc.want)
			}
		})
	}
}

func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestPublishedDaemonFileIsRemovedOnlyByItsDaemon(t *testing.T) {
	p := filepath.Join(t.TempDir(), "jerichoci", "daemon.json")
	remove, err := publishDaemonFile(p, daemonFile{StateRoot: "/srv/a", NATSURL: "nats://127.0.0.1:4222", PID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if df, err := readDaemonFile(p); err != nil || df.StateRoot != "/srv/a" {
		t.Fatalf("read back %+v, %v", df, err)
	}
	// Another daemon published since: the first one's stop leaves it.
	if _, err := publishDaemonFile(p, daemonFile{StateRoot: "/srv/b", PID: 2}); err != nil {
		t.Fatal(err)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if df, err := readDaemonFile(p); err != nil || df.PID != 2 {
		t.Errorf("after the first daemon stopped: %+v, %v; want the second's file kept", df, err)
	}
}

// clientDaemon is an embedded server with its credentials under state,
// and a daemon answering cancels and lookups (no workers).
type clientDaemon struct {
	state string
	url   string
	q     *daemon.Queue
}

func startClientDaemon(t *testing.T) clientDaemon {
	t.Helper()
	env, q, _, state := embeddedQueueIn(t)
	d := &daemon.Daemon{Config: daemon.DefaultDaemonConfig(), Jobs: q.Jobs, Results: q.Results, Waiting: q, Log: zaptest.NewLogger(t)}
	for _, sub := range []func() (*nats.Subscription, error){
		func() (*nats.Subscription, error) { return q.SubscribeCancels(d, 10*time.Second) },
		func() (*nats.Subscription, error) { return q.SubscribeLookups(d, 10*time.Second) },
	} {
		s, err := sub()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Unsubscribe() })
	}
	return clientDaemon{state: state, url: env["JERICHOCI_NATS_URL"], q: q}
}

func TestClientFindsItsDaemonFromAnyDirectory(t *testing.T) {
	// As a user other than root, whose daemon files are per user.
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	cd := startClientDaemon(t)
	runtime := t.TempDir()
	published := filepath.Join(runtime, daemonFileName)
	if _, err := publishDaemonFile(published, daemonFile{StateRoot: cd.state, NATSURL: cd.url, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	cwd, _ := os.Getwd()
	id := uuid.NewString()
	tests := []struct {
		name   string
		env    map[string]string
		code   int
		stderr []string // each must be in stderr
		stdout string
	}{
		{"the daemon file of this user", map[string]string{"XDG_RUNTIME_DIR": runtime, "HOME": empty}, exitUsage,
			nil, "unknown job"},
		{"the daemon file named by the environment", map[string]string{envDaemonFile: published}, exitUsage, nil, "unknown job"},
		{"the state root given", map[string]string{envStateRoot: cd.state, envDaemonFile: ""}, exitUsage, nil, "unknown job"},
		{"a wrong state root given: only it is tried", map[string]string{envStateRoot: empty, "XDG_RUNTIME_DIR": runtime, "JERICHOCI_NATS_URL": cd.url}, exitUsage,
			[]string{"Authorization Violation", filepath.Join(empty, "nats", "client.json") + ": not found", "fix: pass the daemon's state root (--state-root DIR or PIKACI_STATE_ROOT=DIR; `make run` keeps it in .pikaci of the jerichoci checkout)"}, ""},
		{"no daemon file, no state root: every place is named", map[string]string{"XDG_RUNTIME_DIR": empty, "HOME": empty, "JERICHOCI_NATS_URL": cd.url}, exitUsage,
			[]string{"Authorization Violation", filepath.Join(empty, daemonFileName) + ": no daemon file",
				filepath.Join(empty, ".local", "state", daemonFileName) + ": no daemon file", filepath.Join(cwd, ".pikaci", "nats", "client.json") + ": not found"}, ""},
		{"no daemon at the URL", map[string]string{"JERICHOCI_NATS_URL": "nats://127.0.0.1:1", envDaemonFile: ""}, exitUsage,
			[]string{"no daemon answers at nats://127.0.0.1:1: start one with `make run` in the jerichoci checkout or `jerichoci serve`"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLIEnv(t, tc.env, "cancel", id, "--timeout", "20s")
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout %q lacks %q", stdout, tc.stdout)
			}
		})
	}
}

// enqueueOne queues demo-pass of src (a host path) and returns its job id.
func enqueueOne(t *testing.T, env map[string]string, src string) string {
	t.Helper()
	id, stderr, code := runCLIEnv(t, env, "enqueue", "demo-pass", "--source", src, "--host-path", "--catalog", "../../jerichoci.lanes.json")
	if code != exitOK {
		t.Fatalf("enqueue: exit %d\n%s", code, stderr)
	}
	return strings.TrimSpace(id)
}

func TestUnknownAndQueuedJobIDs(t *testing.T) {
	cd := startClientDaemon(t)
	env := map[string]string{envStateRoot: cd.state}
	src := t.TempDir()
	queued := enqueueOne(t, env, src)
	finished := uuid.NewString()
	rec := model.RunRecord{RunID: "20260101T000000Z-0000abcd", Status: model.StatusFailed, SourceRoot: src, Message: new("test command exited with 3"),
		ChangedFiles: []string{}, Filters: []string{}, PrepareTimings: []model.PrepareTimingRecord{}, Jobs: []model.JobRecord{}}
	b, _ := json.Marshal(rec)
	if _, err := cd.q.Results.Create(t.Context(), finished, b); err != nil {
		t.Fatal(err)
	}
	unknown := uuid.NewString()
	tests := []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"logs --follow of an unknown id", []string{"logs", "--follow", unknown}, exitUsage, "job " + unknown + " is unknown: no job with this id is queued, running or finished"},
		{"logs --follow of a finished job", []string{"logs", "--follow", finished}, exitFailed, "FAILED no jobs, ran 0s\ntest command exited with 3"},
		{"cancel of an unknown id", []string{"cancel", unknown}, exitUsage, "unknown job: no job with this id is queued, running or finished (a mistyped id?)"},
		{"cancel of a finished job", []string{"cancel", finished}, exitFailed, "already finished"},
		{"cancel of a queued job", []string{"cancel", queued}, exitOK, "cancelled before it started"},
		{"cancel of it again", []string{"cancel", queued}, exitOK, "cancel already requested"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLIEnv(t, env, tc.args...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.output) {
				t.Errorf("exit %d, want %d with %q; stdout:\n%q\nstderr:\n%q", code, tc.code, tc.output, stdout, stderr)
			}
		})
	}
}

func TestSourceMustBeADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "demo-pass", "--source", "/nonexistent/src", "--catalog", "../../jerichoci.lanes.json"}, `--source "/nonexistent/src": /nonexistent/src does not exist; expected the directory of the source tree`},
		{[]string{"run", "demo-pass", "--source", file, "--catalog", "../../jerichoci.lanes.json"}, file + " is not a directory"},
		{[]string{"enqueue", "demo-pass", "--source", "/nonexistent/src"}, "/nonexistent/src does not exist"},
		{[]string{"enqueue", "demo-pass", "--source", file}, file + " is not a directory"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[:2], " ")+" "+filepath.Base(tc.args[3]), func(t *testing.T) {
			_, stderr, code := runCLIEnv(t, map[string]string{"JERICHOCI_NATS_URL": "nats://127.0.0.1:1", "PIKACI_STATE_ROOT": t.TempDir()}, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

// interruptOn cancels when what it is written holds marker: a Ctrl-C at
// the moment the command shows it waits.
type interruptOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (w *interruptOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.marker != "" && strings.Contains(w.buf.String(), w.marker) {
		w.cancel()
	}
	return len(p), nil
}

func TestCtrlCOnClientCommandsExits130(t *testing.T) {
	cd := startClientDaemon(t)
	env := map[string]string{envStateRoot: cd.state}
	src := t.TempDir()
	queued := enqueueOne(t, env, src)
	tests := []struct {
		name   string
		args   []string
		marker string // on stdout: interrupt then; "" interrupts after a while (or at once)
		after  time.Duration
		stderr string
	}{
		{"enqueue --wait, while waiting", []string{"enqueue", "demo-pass", "--source", src, "--host-path", "--wait", "--catalog", "../../jerichoci.lanes.json"}, "queued (stream sequence", 0,
			"interrupted; job "},
		{"enqueue --wait, before queueing", []string{"enqueue", "demo-pass", "--source", src, "--wait", "--catalog", "../../jerichoci.lanes.json"}, "", 0, "interrupted; nothing was queued"},
		{"logs --follow of a queued job, while waiting", []string{"logs", "--follow", queued}, "", time.Second, "interrupted; the job goes on"},
		{"cancel --wait", []string{"cancel", queued, "--wait"}, "cancelled before it started", 0, "interrupted; the cancel was requested"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.marker == "" {
				// Not an assertion: whenever it comes, the exit must be 130.
				time.AfterFunc(tc.after, cancel)
			}
			out := &interruptOn{marker: tc.marker, cancel: cancel}
			var errb bytes.Buffer
			c := &cli{stdout: out, stderr: &errb, env: mapEnv(env)}
			code := c.main(ctx, tc.args)
			if code != exitInterrupted || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("exit %d, want 130 with %q; stdout:\n%s\nstderr:\n%s", code, tc.stderr, out.buf.String(), errb.String())
			}
		})
	}
}

func TestStatusOfAFailedRunSaysWhy(t *testing.T) {
	root := fixtureState(t)
	tests := []struct {
		run, stderr string
	}{
		{failedRun, "server-agent-api-tests: test command exited with 101\n"},
		{stagedRun, ""},
		{skippedRun, ""},
	}
	for _, tc := range tests {
		t.Run(tc.run, func(t *testing.T) {
			_, stderr, code := inState(t, root, "status", tc.run)
			if code != exitOK || stderr != tc.stderr {
				t.Errorf("exit %d, stderr %q; want 0 and %q", code, stderr, tc.stderr)
			}
		})
	}
}

// TestCommandsBadInputExits2 holds every command to README's table: bad
// usage and bad input are 2, whatever the command.
func TestCommandsBadInputExits2(t *testing.T) {
	root := fixtureState(t)
	unknownID := uuid.NewString()
	tests := [][]string{
		{"status", "nope"}, {"logs", "nope"}, {"runs", "show", "nope"}, {"runs", "logs", "nope"},
		{"prepared-outputs", "nope"}, {"rerun", "nope"}, {"targets", "show", "nope"}, {"list", "extra"},
		{"gc", "--keep-runs", "-1"}, {"version", "extra"}, {"staged-linux-target-info", "nope"},
		{"lanes", "select", "--changed-from", "/nonexistent"}, {"run", "nope"}, {"nope"},
		{"cancel", "not-a-uuid"}, {"logs", "--follow", "not-a-uuid"},
		// No daemon answers: 2, not a run's failure.
		{"cancel", unknownID}, {"logs", "--follow", unknownID},
		{"enqueue", "demo-pass", "--source", root},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, stderr, code := runCLIEnv(t, map[string]string{envStateRoot: root, "JERICHOCI_NATS_URL": "nats://127.0.0.1:1", envDaemonFile: ""}, args...)
			if code != exitUsage || stderr == "" {
				t.Errorf("exit %d, want 2 with a message; stderr:\n%s", code, stderr)
			}
		})
	}
}

func TestEmbeddedServerDoesNotWarnAboutItsOwnPasswords(t *testing.T) {
	listen, state, users := testEmbeddedUsers(t)
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := startEmbedded(embeddedOptions{Listen: listen, StoreDir: filepath.Join(state, "nats"), Users: users}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	// Every generated user still gets in with its password.
	for role, cr := range users.Roles {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(cr.User, cr.Password))
		if err != nil {
			t.Errorf("%s: %v", role, err)
			continue
		}
		nc.Close()
	}
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "Plaintext passwords") {
			t.Errorf("the embedded server warned: %s", e.Message)
		}
	}
	if conf, err := embeddedConfig(users); err != nil || strings.Contains(conf, users.Roles[protocol.RoleClient].Password) {
		t.Errorf("embeddedConfig holds a plaintext password (err %v)", err)
	}
}

// markWriter records what is written and closes seen once it holds marker.
type markWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	seen   chan struct{}
}

func (w *markWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.marker != "" && strings.Contains(w.buf.String(), w.marker) {
		close(w.seen)
		w.marker = ""
	}
	return len(p), nil
}

func (w *markWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestServeSaysWhatItsStopWaitsFor(t *testing.T) {
	tests := []struct {
		name  string
		steps []string // the slow one waits until it has been named
		slow  string
		want  []string
	}{
		{"a slow warm pool", []string{"daemon file", "the warm pool (deleting its idle instances)", "incus client"}, "the warm pool (deleting its idle instances)",
			[]string{"jerichoci serve: stopping: waiting for the warm pool (deleting its idle instances)\n", "jerichoci serve: stopping: the warm pool (deleting its idle instances) done after "}},
		{"slow teardowns", []string{"instance teardowns"}, "instance teardowns",
			[]string{"jerichoci serve: stopping: waiting for instance teardowns\n", "jerichoci serve: stopping: instance teardowns done after "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &markWriter{marker: "waiting for " + tc.slow, seen: make(chan struct{})}
			// first 0: every step is named at once; the slow one returns only then.
			s := closers{watch: stopProgress(w, 0, time.Hour)}
			for _, name := range tc.steps {
				s.push(name, func() error {
					if name == tc.slow {
						<-w.seen
					}
					return nil
				})
			}
			if err := s.close(); err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.want {
				if !strings.Contains(w.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, w.String())
				}
			}
		})
	}
}

func TestDrainProgressNamesTheRunningJobs(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the first signal
	stopped := make(chan struct{})
	w := &markWriter{marker: "still waiting for 2 running job(s) to finish", seen: make(chan struct{})}
	go func() { <-w.seen; close(stopped) }()
	drainProgress(ctx, w, func() int { return 2 }, time.Millisecond, stopped)
	if !strings.Contains(w.String(), "signal again to cancel them") {
		t.Errorf("stderr: %q", w.String())
	}
}
