package hostlocal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"jerichoci/executor"
	"jerichoci/internal/mask"
	"jerichoci/model"
)

// fixedNow stamps host.log lines and result.json in the tests.
var fixedNow = time.Date(2026, 3, 19, 1, 9, 40, 0, time.UTC)

// hostLog is a concurrency-safe host log that can tell when a line shows up.
type hostLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	watch   string
	matched chan struct{}
}

func (h *hostLog) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, err := h.buf.Write(p)
	if h.matched != nil && strings.Contains(h.buf.String(), h.watch) {
		close(h.matched)
		h.matched = nil
	}
	return n, err
}

func (h *hostLog) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.String()
}

// seen returns a channel closed once the log contains s.
func (h *hostLog) seen(s string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := make(chan struct{})
	if strings.Contains(h.buf.String(), s) {
		close(c)
		return c
	}
	h.watch, h.matched = s, c
	return c
}

// env is a fake worker environment.
func env(kv ...string) model.LookupEnv {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// fixture is one state root with a run snapshot.
type fixture struct {
	t     *testing.T
	root  string // temp dir of the test
	state string
	x     *Executor
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{t: t, root: root, state: filepath.Join(root, "state")}
	f.x = &Executor{StateRoot: f.state, Env: env(), Nix: filepath.Join(root, "no-nix-here"),
		Log: zaptest.NewLogger(t), Now: func() time.Time { return fixedNow }}
	return f
}

// snapshot writes a run snapshot named name with files and its metadata
// (content hash hash, none when "").
func (f *fixture) snapshot(name string, files map[string]string, hash string) string {
	f.t.Helper()
	dir := filepath.Join(f.root, "snapshots", name)
	for p, body := range files {
		writeFile(f.t, filepath.Join(dir, p), body)
	}
	meta := model.SnapshotMetadata{SourceRoot: filepath.Join(f.root, "src"), SnapshotDir: dir, CreatedAt: model.At(fixedNow)}
	if hash != "" {
		meta.ContentHash = &hash
	}
	b, err := json.Marshal(meta)
	if err != nil {
		f.t.Fatal(err)
	}
	writeFile(f.t, filepath.Join(dir, model.SnapshotMetadataFile), string(b))
	return dir
}

func (f *fixture) job(id, snapshot, command string) executor.Job {
	return executor.Job{RunID: "run-1", ID: id, TimeoutSecs: 120, Command: model.HostShell(command),
		Runtime: model.HostProcessRuntime(), SnapshotDir: snapshot, JobDir: filepath.Join(f.root, "jobs", id),
		HostLog: &hostLog{}, HostCacheScope: "job-" + id}
}

func (f *fixture) cache(j executor.Job) string {
	return filepath.Join(f.state, "cache", "host-local", j.HostCacheScope)
}

func logOf(j executor.Job) string { return j.HostLog.(*hostLog).String() }

func writeFile(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// assertUnlocked fails unless the cache lock is free.
func assertUnlocked(t *testing.T, cache string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open cache lock: %v", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("the cache lock is still held after Execute returned: %v", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

func TestExecuteExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, command string
		status        model.RunStatus
		code          int32
		message       string
		verdict       string
		exitLine      string
	}{
		{"pass", "echo hello", model.StatusPassed, 0, "host-local command passed", "completed", "exited with 0"},
		{"fail", "exit 3", model.StatusFailed, 3, "host-local command exited with 3", "failed", "exited with 3"},
		{"signal", "kill -9 $$", model.StatusFailed, 1, "host-local command exited with 1", "failed", "was killed by signal 9 (killed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			j := f.job("j", f.snapshot("s", map[string]string{"a.txt": "a"}, "h1"), tc.command)
			res, err := f.x.Execute(context.Background(), j)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if res.Status != tc.status || res.ExitCode == nil || *res.ExitCode != tc.code || res.Message != tc.message {
				t.Fatalf("result = %+v (exit %v), want %s %d %q", res, res.ExitCode, tc.status, tc.code, tc.message)
			}
			want := `{
  "schema_version": 1,
  "status": "` + tc.verdict + `",
  "exit_code": ` + strconv.Itoa(int(tc.code)) + `,
  "finished_at": "2026-03-19T01:09:40+00:00",
  "message": "` + tc.message + `"
}`
			if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "result.json")); got != want {
				t.Fatalf("result.json:\n%s\nwant:\n%s", got, want)
			}
			var tr model.TerminalResult
			if err := json.Unmarshal([]byte(want), &tr); err != nil {
				t.Fatalf("result.json does not decode as a terminal result: %v", err)
			}
			log := logOf(j)
			for _, line := range []string{
				"[pikaci] acquired host-local cache lock for `j` at " + filepath.Join(f.cache(j), ".lock") + "\n",
				"[pikaci] host-local workspace rematerialized from cached snapshot in ",
				"[pikaci] starting host-local job `j` at 2026-03-19T01:09:40+00:00\n",
				"[pikaci] host-local command: bash --noprofile --norc -lc " + model.ShellQuote(tc.command) + "\n",
				"[pikaci] host-local execution environment: direct shell\n",
				"[pikaci] host-local job " + tc.exitLine + " at 2026-03-19T01:09:40+00:00\n",
			} {
				if !strings.Contains(log, line) {
					t.Errorf("host log lacks %q:\n%s", line, log)
				}
			}
			assertUnlocked(t, f.cache(j))
		})
	}
}

func TestCommandEnvironmentAndOutput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.x.Env = env("OPENCLAW_DIR", "rel/openclaw")
	cmd := `printf '%s\n' "$ARTIFACTS" "$CARGO_HOME" "$CARGO_TARGET_DIR" "$OPENCLAW_DIR" "$PWD" > "$ARTIFACTS/env.txt"; echo to-stdout; echo to-stderr >&2`
	j := f.job("env", f.snapshot("s", nil, "h1"), cmd)
	res, err := f.x.Execute(context.Background(), j)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	cache := f.cache(j)
	want := strings.Join([]string{
		filepath.Join(j.JobDir, "artifacts"),
		filepath.Join(f.state, "cache", "cargo-home"),
		filepath.Join(cache, "cargo-target"),
		filepath.Join(f.root, "src", "rel/openclaw"),
		filepath.Join(cache, "workspace"),
	}, "\n") + "\n"
	if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "env.txt")); got != want {
		t.Fatalf("command environment:\n%s\nwant:\n%s", got, want)
	}
	log := logOf(j)
	if !strings.Contains(log, "\nto-stdout\n") || !strings.Contains(log, "\nto-stderr\n") {
		t.Fatalf("host log lacks the raw output:\n%s", log)
	}
}

// A host job gets its secret_env and its output is masked as a stream: a
// value printed in two writes is masked too.
func TestSecretEnvMaskedInHostOutput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const secret = "host-SECRET-9876"
	cmd := `printf 'a=%s' "${JCI_S:0:7}"; sleep 0.2; printf '%s\n' "${JCI_S:7}"; echo "b=$JCI_S" >&2`
	j := f.job("sec", f.snapshot("s", nil, "h1"), cmd)
	j.SecretEnv, j.Mask = map[string]string{"JCI_S": secret}, mask.New(secret)
	if res, err := f.x.Execute(context.Background(), j); err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	log := logOf(j)
	if !strings.Contains(log, "\na=[MASKED]\n") || !strings.Contains(log, "\nb=[MASKED]\n") || strings.Contains(log, secret) {
		t.Fatalf("host log:\n%s", log)
	}
}

func TestOpenclawDirFromWorkspace(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.job("oc", f.snapshot("s", map[string]string{"openclaw/package.json": "{}"}, "h1"),
		`printf '%s' "$OPENCLAW_DIR" > "$ARTIFACTS/oc"`)
	if res, err := f.x.Execute(context.Background(), j); err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	if got, want := readFile(t, filepath.Join(j.JobDir, "artifacts", "oc")), filepath.Join(f.cache(j), "workspace", "openclaw"); got != want {
		t.Fatalf("OPENCLAW_DIR = %q, want %q", got, want)
	}
}

// gone waits until pid has exited (gone, or a zombie nobody reaps), and
// fails if it is still running after a long while.
func gone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 600; i++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// pid (comm) S …: the state follows the last ')'.
		s := string(b)
		if k := strings.LastIndexByte(s, ')'); k >= 0 && k+2 < len(s) && (s[k+2] == 'Z' || s[k+2] == 'X') {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("process %d still runs after its job was killed", pid)
}

// childCommand starts a sleep in the background and records its pid.
const childCommand = `sleep 300 & echo $! > "$ARTIFACTS/child.pid"; wait`

func childPid(t *testing.T, j executor.Job) int {
	t.Helper()
	s, err := os.ReadFile(filepath.Join(j.JobDir, "artifacts", "child.pid"))
	if err != nil {
		t.Fatalf("the command did not record its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(s)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.job("slow", f.snapshot("s", nil, "h1"), childCommand)
	j.TimeoutSecs = 3
	res, err := f.x.Execute(context.Background(), j)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if res.Status != model.StatusFailed || res.ExitCode != nil || res.Message != "timed out after 3s" {
		t.Fatalf("result = %+v, want failed, exit null, %q", res, "timed out after 3s")
	}
	gone(t, childPid(t, j))
	if !strings.Contains(logOf(j), "[pikaci] timeout after 3s, killing host-local command\n") {
		t.Fatalf("host log:\n%s", logOf(j))
	}
	if exists(filepath.Join(j.JobDir, "artifacts", "result.json")) {
		t.Fatal("a timed-out job wrote result.json")
	}
	assertUnlocked(t, f.cache(j))
}

func TestCancelKillsProcessGroup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.job("cancel", f.snapshot("s", nil, "h1"), childCommand)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		res executor.Result
		err error
	}
	done := make(chan out, 1)
	go func() { r, err := f.x.Execute(ctx, j); done <- out{r, err} }()
	pidFile := filepath.Join(j.JobDir, "artifacts", "child.pid")
	for !exists(pidFile) {
		select {
		case o := <-done:
			t.Fatalf("Execute returned before the child started: %+v, %v", o.res, o.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The pid file may be created but not yet written.
	for strings.TrimSpace(readFile(t, pidFile)) == "" {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	o := <-done
	if !errors.Is(o.err, context.Canceled) {
		t.Fatalf("Execute = %+v, %v; want an error wrapping context.Canceled", o.res, o.err)
	}
	var xe *executor.Error
	if errors.As(o.err, &xe) {
		t.Fatalf("a cancelled job is not an infrastructure error: %v", o.err)
	}
	gone(t, childPid(t, j))
	assertUnlocked(t, f.cache(j))
}

// TestSameScopeSerializes runs two jobs of one scope at once: the second
// waits for the first's lock, which the files they write show. Every wait
// also watches the jobs: one that ends early fails the test instead of
// leaving it waiting, and the test's end cancels both jobs.
func TestSameScopeSerializes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	snap := f.snapshot("s", nil, "h1")
	shared := filepath.Join(f.root, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	order, release := filepath.Join(shared, "order"), filepath.Join(shared, "release")
	a := f.job("a", snap, "echo a-start >> "+order+"; while [ ! -e "+release+" ]; do sleep 0.05; done; echo a-end >> "+order)
	b := f.job("b", snap, "echo b >> "+order)
	a.HostCacheScope, b.HostCacheScope = "target-t", "target-t"
	lockPath := filepath.Join(f.cache(a), ".lock")
	waitLine := "[pikaci] waiting for host-local cache lock " + lockPath + "\n"

	type out struct {
		res executor.Result
		err error
	}
	// t.Context() ends before the cleanups run: a job still running then
	// is cancelled, and the wait keeps the temporary directory until it
	// has returned.
	var jobs sync.WaitGroup
	t.Cleanup(jobs.Wait)
	da, db := make(chan out, 1), make(chan out, 1)
	jobs.Go(func() { r, err := f.x.Execute(t.Context(), a); da <- out{r, err} })
	for !strings.Contains(readIfExists(order), "a-start") {
		select {
		case o := <-da:
			t.Fatalf("a ended before its command started: %+v, %v", o.res, o.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	waiting := b.HostLog.(*hostLog).seen(waitLine)
	jobs.Go(func() { r, err := f.x.Execute(t.Context(), b); db <- out{r, err} })
	select {
	case <-waiting:
	case o := <-db:
		t.Fatalf("b ended without waiting for a's lock: %+v, %v; order %q; b's host log:\n%s", o.res, o.err, readIfExists(order), logOf(b))
	case o := <-da:
		t.Fatalf("a ended before it was released: %+v, %v", o.res, o.err)
	}
	writeFile(t, release, "")
	for _, o := range []out{<-da, <-db} {
		if o.err != nil || o.res.Status != model.StatusPassed {
			t.Fatalf("Execute = %+v, %v", o.res, o.err)
		}
	}
	if got := readFile(t, order); got != "a-start\na-end\nb\n" {
		t.Fatalf("order = %q: b ran while a held the lock", got)
	}
	lb := logOf(b)
	acquired := "[pikaci] acquired host-local cache lock for `b` at " + lockPath + "\n"
	if strings.Count(lb, waitLine) != 1 || strings.Index(lb, waitLine) > strings.Index(lb, acquired) {
		t.Fatalf("b's host log should say once that it waits, then that it acquired the lock:\n%s", lb)
	}
	if strings.Contains(logOf(a), "waiting for host-local cache lock") {
		t.Fatalf("a did not wait:\n%s", logOf(a))
	}
	assertUnlocked(t, f.cache(a))
}

func readIfExists(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func TestLockTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.job("locked", f.snapshot("s", nil, "h1"), "touch "+filepath.Join(f.root, "ran"))
	j.TimeoutSecs = 1
	lockPath := filepath.Join(f.cache(j), ".lock")
	writeFile(t, lockPath, "")
	held, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	res, err := f.x.Execute(context.Background(), j)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	want := "timed out after 1s waiting for host-local cache lock " + lockPath
	if res.Status != model.StatusFailed || res.ExitCode != nil || res.Message != want {
		t.Fatalf("result = %+v, want failed, exit null, %q", res, want)
	}
	if exists(filepath.Join(f.root, "ran")) {
		t.Fatal("the command ran without the lock")
	}
	log := logOf(j)
	if strings.Count(log, "[pikaci] waiting for host-local cache lock "+lockPath+"\n") != 1 || !strings.Contains(log, "[pikaci] "+want+"\n") {
		t.Fatalf("host log:\n%s", log)
	}
}

func TestWorkspaceReuseAndRefresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s1 := f.snapshot("s1", map[string]string{"a.txt": "one"}, "h1")
	s2 := f.snapshot("s2", map[string]string{"a.txt": "two"}, "h2")
	s3 := f.snapshot("s3", map[string]string{"a.txt": "three"}, "")
	var marker string
	for i, step := range []struct {
		snapshot, refresh, content string
		markerKept                 bool
	}{
		{s1, "rematerialized from cached snapshot", "one", false},
		{s1, "reused unchanged snapshot", "one", true},
		{s2, "rematerialized from cached snapshot", "two", false},
		{s2, "reused unchanged snapshot", "two", true},
		// Without a content hash nothing matches: always copied afresh.
		{s3, "rematerialized from cached snapshot", "three", false},
		{s3, "rematerialized from cached snapshot", "three", false},
	} {
		j := f.job("ws", step.snapshot, "cat a.txt > \"$ARTIFACTS/a\"")
		j.JobDir = filepath.Join(f.root, "jobs", strconv.Itoa(i))
		res, err := f.x.Execute(context.Background(), j)
		if err != nil || res.Status != model.StatusPassed {
			t.Fatalf("step %d: Execute = %+v, %v", i, res, err)
		}
		if !strings.Contains(logOf(j), "[pikaci] host-local workspace "+step.refresh+" in ") {
			t.Fatalf("step %d: want %q in the host log:\n%s", i, step.refresh, logOf(j))
		}
		if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "a")); got != step.content {
			t.Fatalf("step %d: workspace a.txt = %q, want %q", i, got, step.content)
		}
		if marker != "" && exists(marker) != step.markerKept {
			t.Fatalf("step %d: marker kept = %v, want %v", i, exists(marker), step.markerKept)
		}
		marker = filepath.Join(f.cache(j), "workspace", "marker")
		writeFile(t, marker, "left by a job")
	}
}

func TestMaterializeKeepsPermissionsAndLinks(t *testing.T) {
	t.Parallel()
	src, dst := filepath.Join(t.TempDir(), "s"), filepath.Join(t.TempDir(), "w")
	writeFile(t, filepath.Join(src, "run.sh"), "#!/bin/sh\n")
	writeFile(t, filepath.Join(src, "ro", "f"), "f")
	writeFile(t, filepath.Join(src, "build", "kept"), "root build dir is kept")
	writeFile(t, filepath.Join(src, "sub", "build", "x"), "skipped below the root")
	writeFile(t, filepath.Join(src, "sub", "target", "x"), "skipped")
	writeFile(t, filepath.Join(src, model.SnapshotMetadataFile), `{}`)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(filepath.Join(src, "run.sh"), 0o750))
	must(os.Symlink("run.sh", filepath.Join(src, "link")))
	must(os.Symlink("/nonexistent/target", filepath.Join(src, "dangling")))
	must(os.Chmod(filepath.Join(src, "ro"), 0o555))
	writeFile(t, filepath.Join(src, "suid"), "no setuid bit survives a copy")
	must(os.Chmod(filepath.Join(src, "suid"), 0o755|os.ModeSetuid|os.ModeSetgid))
	must(materialize(t.Context(), src, dst))

	for p, want := range map[string]os.FileMode{"run.sh": 0o750, "ro": os.ModeDir | 0o555, "ro/f": 0o644, "suid": 0o755} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		must(err)
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	for link, want := range map[string]string{"link": "run.sh", "dangling": "/nonexistent/target"} {
		got, err := os.Readlink(filepath.Join(dst, link))
		if err != nil || got != want {
			t.Errorf("%s: readlink = %q, %v; want the link %q", link, got, err, want)
		}
	}
	for p, want := range map[string]bool{"build/kept": true, "sub/build": false, "sub/target": false, model.SnapshotMetadataFile: true} {
		if exists(filepath.Join(dst, p)) != want {
			t.Errorf("%s: exists = %v, want %v", p, !want, want)
		}
	}
	// A workspace with read-only directories is still replaced.
	must(removeAll(dst))
	if exists(dst) {
		t.Fatal("removeAll left the workspace")
	}
}

func TestRejectedCommands(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cmd  model.JobCommand
		want string
	}{
		{"root", model.ShellAsRoot("id"), "host-local jobs do not support root commands"},
		{"guest shell", model.Shell("id"), "host-local job `j` must use a host_shell command, got kind \"shell\""},
		{"cargo", model.JobCommand{Kind: model.CmdCargoExactTest, Package: "p", Test: "t"}, "host-local job `j` must use a host_shell command, got kind \"cargo_exact_test\""},
		{"empty", model.HostShell(" "), "host-local job `j`: command field `command` must be non-empty for kind \"host_shell\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			j := f.job("j", f.snapshot("s", nil, "h1"), "")
			j.Command = tc.cmd
			res, err := f.x.Execute(context.Background(), j)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Execute = %+v, %v; want the error %q", res, err, tc.want)
			}
			var xe *executor.Error
			if errors.As(err, &xe) {
				t.Fatalf("a rejected command is not an infrastructure error: %v", err)
			}
			if exists(f.cache(j)) {
				t.Fatal("a rejected job touched the cache")
			}
		})
	}
}

// TestHostFailureReleasesLock: a snapshot without metadata fails after the
// lock was taken; the error is an infrastructure one and the lock is free.
func TestHostFailureReleasesLock(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	snap := filepath.Join(f.root, "empty-snapshot")
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	j := f.job("broken", snap, "true")
	_, err := f.x.Execute(context.Background(), j)
	var xe *executor.Error
	if !errors.As(err, &xe) || !strings.Contains(err.Error(), model.SnapshotMetadataFile) {
		t.Fatalf("Execute error = %v, want an *executor.Error naming %s", err, model.SnapshotMetadataFile)
	}
	assertUnlocked(t, f.cache(j))
}

func TestScope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		target string
		ids    []string
		want   string
	}{
		{"pika-ci", []string{"a", "b"}, "target-pika-ci"},
		{"a/b c_d.e", nil, "target-a-b-c-d-e"},
		{"é", nil, "target--"}, // one '-' per character, not per byte
		{"", []string{"only"}, "job-only"},
		{"", []string{"x_y.z"}, "job-x-y-z"},
		{"", []string{"a", "b"}, "adhoc-8fb20ef63ced"}, // sha256("a\0b\0")
		{"", []string{"b", "a"}, "adhoc-" + sha12("b\x00a\x00")},
		{"", nil, "adhoc-e3b0c44298fc"}, // sha256("")
	} {
		if got := Scope(tc.target, tc.ids); got != tc.want {
			t.Errorf("Scope(%q, %q) = %q, want %q", tc.target, tc.ids, got, tc.want)
		}
		if !validScope(Scope(tc.target, tc.ids)) {
			t.Errorf("Scope(%q, %q) is not a valid scope", tc.target, tc.ids)
		}
	}
	for _, bad := range []string{"", "../x", "a/b", "a b"} {
		if validScope(bad) {
			t.Errorf("validScope(%q) = true", bad)
		}
	}
}

func sha12(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:12]
}

func TestCancelledBeforeStart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.job("early", f.snapshot("s", nil, "h1"), "touch "+filepath.Join(f.root, "ran"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.x.Execute(ctx, j); !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute error = %v, want one wrapping context.Canceled", err)
	}
	if exists(filepath.Join(f.root, "ran")) {
		t.Fatal("the command ran under a cancelled context")
	}
}
