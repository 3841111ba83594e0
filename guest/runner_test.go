package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

type buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func runRequest(t *testing.T, req string) (code int, dir string, stdout, stderr string) {
	t.Helper()
	root := newGuestRoot(t)
	dir = filepath.Join(root, "run", "pika-cloud")
	reqPath := filepath.Join(dir, "guest-request.json")
	if err := os.WriteFile(reqPath, []byte(req), 0o644); err != nil {
		t.Fatal(err)
	}
	var o, e buf
	r := &Runner{Root: root, Environ: incusExecEnv, Stdout: &o, Stderr: &e}
	code = r.Main(t.Context(), reqPath)
	return code, dir, o.String(), e.String()
}

func result(t *testing.T, dir string) model.TerminalResult {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r model.TerminalResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("result.json %s: %v", b, err)
	}
	return r
}

func TestRunnerOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		command    string
		root       bool
		timeout    int
		wantCode   int
		wantStatus model.TerminalStatus
		wantMsg    string
	}{
		{"pass", "true", true, 30, 0, model.TerminalCompleted, "test passed"},
		{"exit 3", "exit 3", true, 30, 3, model.TerminalFailed, "test command exited with 3"},
		{"not found", "no-such-command-xyz", true, 30, 127, model.TerminalFailed, "test command exited with 127"},
		{"timeout", "sleep 30", true, 1, 124, model.TerminalFailed, "test command exited with 124"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := model.EncodeCompact(model.GuestRequest{SchemaVersion: 2, Command: tc.command, TimeoutSecs: uint64(tc.timeout), RunAsRoot: tc.root})
			code, dir, _, _ := runRequest(t, string(req))
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", code, tc.wantCode)
			}
			res := result(t, dir)
			if res.Status != tc.wantStatus || res.Message != tc.wantMsg || res.ExitCode == nil || int(*res.ExitCode) != tc.wantCode {
				t.Errorf("result = %+v", res)
			}
			events, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
			kinds := []string{}
			for _, line := range strings.Split(strings.TrimSpace(string(events)), "\n") {
				var ev model.GuestEvent
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("event %q: %v", line, err)
				}
				kinds = append(kinds, string(ev.Kind))
			}
			wantLast := "completed"
			if tc.wantCode != 0 {
				wantLast = "failed"
			}
			if got := strings.Join(kinds, ","); got != "booted,starting,"+wantLast {
				t.Errorf("events = %s", got)
			}
		})
	}
}

// The command's stdout and stderr reach the runner's stdout together, in
// the order written, as they reach the guest log.
func TestRunnerStreamsAndLog(t *testing.T) {
	req := `{"schema_version":2,"command":"echo to-out; echo to-err >&2; echo again; pwd","timeout_secs":30,"run_as_root":true}`
	code, dir, stdout, stderr := runRequest(t, req)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	root := filepath.Dir(filepath.Dir(dir))
	want := "to-out\nto-err\nagain\n" + filepath.Join(root, "workspace", "snapshot") + "\n"
	if _, out, _ := strings.Cut(stdout, "\n"); out != want || stderr != "" {
		t.Errorf("stdout %q, stderr %q; want the booted line and then %q", stdout, stderr, want)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "logs", "guest.log"))
	if !strings.HasPrefix(string(log), "[pikaci] incus guest booted at ") || !strings.HasSuffix(string(log), want) {
		t.Errorf("guest.log = %q", log)
	}
}

func TestRunnerRejectsBadRequests(t *testing.T) {
	tests := []struct{ req, want string }{
		{`{"schema_version":1,"command":"true","timeout_secs":5,"run_as_root":false}`, "unsupported Incus guest request schema_version=1"},
		{`{"command":"true","timeout_secs":5,"run_as_root":false}`, "unsupported Incus guest request schema_version=None"},
		{`{"schema_version":"2","command":"true","timeout_secs":5,"run_as_root":false}`, "unsupported Incus guest request schema_version='2'"},
		{`{"schema_version":2,"command":"","timeout_secs":5,"run_as_root":false}`, "missing non-empty string field `command`"},
		{`{"schema_version":2,"command":"true","timeout_secs":true,"run_as_root":false}`, "missing positive integer field `timeout_secs`"},
		{`{"schema_version":2,"command":"true","timeout_secs":0,"run_as_root":false}`, "missing positive integer field `timeout_secs`"},
		{`{"schema_version":2,"command":"true","timeout_secs":5.0,"run_as_root":false}`, "missing positive integer field `timeout_secs`"},
		{`{"schema_version":2,"command":"true","timeout_secs":5}`, "missing boolean field `run_as_root`"},
		{`{"schema_version":2,"command":"true","timeout_secs":5,"run_as_root":null}`, "missing boolean field `run_as_root`"},
		{`{"schema_version":2,"command":"true","timeout_secs":5,"run_as_root":false,"env":{}}`, `unknown field "env"`},
		{`{"schema_version":2,"command":"true","timeout_secs":5,"run_as_root":false,"secret_env_file":"rel"}`, "`secret_env_file` must be an absolute path"},
		{`{"schema_version":2,"command":"true","timeout_secs":5,"run_as_root":false,"secret_env_file":"/no/such/file"}`, "read secret environment"},
	}
	for _, tc := range tests {
		code, dir, _, stderr := runRequest(t, tc.req)
		if code != 2 || !strings.HasPrefix(stderr, "[pikaci] Incus guest bootstrap failed: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("request %s: exit %d, stderr %q; want 2 and %q", tc.req, code, stderr, tc.want)
			continue
		}
		res := result(t, dir)
		if res.Status != model.TerminalFailed || !strings.HasPrefix(res.Message, "Incus guest bootstrap failed: ") || res.ExitCode == nil || *res.ExitCode != 2 {
			t.Errorf("result = %+v", res)
		}
	}
}

// The runner signalled (its context ends) takes the whole test command's
// process group down with it, a child that ignores SIGTERM included.
func TestRunnerSignalledStopsTheCommandGroup(t *testing.T) {
	for _, tc := range []struct{ name, command string }{
		{"plain", `echo $$ > pid; sleep 300 & echo $! > child; wait`},
		{"ignores TERM", `trap '' TERM; echo $$ > pid; sh -c 'trap "" TERM; exec sleep 300' & echo $! > child; wait`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newGuestRoot(t)
			dir := filepath.Join(root, "workspace", "snapshot")
			reqPath := filepath.Join(root, "run", "pika-cloud", "guest-request.json")
			req, _ := model.EncodeCompact(model.GuestRequest{SchemaVersion: 2, Command: tc.command, TimeoutSecs: 600, RunAsRoot: true})
			if err := os.WriteFile(reqPath, req, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			var o, e buf
			r := &Runner{Root: root, Environ: incusExecEnv, Stdout: &o, Stderr: &e}
			done := make(chan int, 1)
			go func() { done <- r.Main(ctx, reqPath) }()
			child := waitPID(t, filepath.Join(dir, "child"))
			cancel() // what SIGTERM does to pikaci-incus-run
			<-done
			if alive(child) {
				t.Errorf("the command's child %d is still running after the runner ended", child)
			}
		})
	}
}

// waitPID reads a pid a command writes, waiting a bounded while for it.
func waitPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs: not gone, and not a zombie waiting for
// its new parent to reap it.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// A runner started ahead of its job waits for the request to appear.
func TestRunnerWaitsForItsRequest(t *testing.T) {
	root := newGuestRoot(t)
	dir := filepath.Join(root, "run", "pika-cloud")
	reqPath := filepath.Join(root, "request", "guest-request.json")
	var o, e buf
	r := &Runner{Root: root, Environ: incusExecEnv, Stdout: &o, Stderr: &e, WaitForRequest: true}
	done := make(chan int, 1)
	go func() { done <- r.Main(t.Context(), reqPath) }()
	for deadline := time.Now().Add(30 * time.Second); ; { // booted, and waiting
		if _, err := os.Stat(filepath.Join(dir, "status.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the runner never booted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case code := <-done:
		t.Fatalf("the runner ended (%d) before its request existed: %s", code, e.String())
	default:
	}
	req, _ := model.EncodeCompact(model.GuestRequest{SchemaVersion: 2, Command: "echo from-the-request", TimeoutSecs: 30, RunAsRoot: true})
	if err := os.MkdirAll(filepath.Dir(reqPath), 0o755); err != nil {
		t.Fatal(err)
	}
	// As the pool writes it (executor/pool.go): atomically, so the waiting
	// runner never reads a half-written request.
	if err := atomicfile.WriteFile(reqPath, req, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 || !strings.Contains(o.String(), "from-the-request") {
		t.Errorf("code %d, stdout %q, stderr %q", code, o.String(), e.String())
	}
}

// A secret environment file reaches the command and is gone before it
// runs; names the runner sets itself are refused.
func TestRunnerSecretEnv(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"passed in", `{"API_TOKEN":"tok-123","OTHER":"x y"}`, 0, "tok-123|x y|gone\n", ""},
		{"reserved name", `{"PATH":"/evil"}`, 2, "", `"PATH" is set by the guest runner`},
		{"bad name", `{"1X":"v"}`, 2, "", "expected an environment variable name"},
		{"not an object", `["v"]`, 2, "", "expected a JSON object of strings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			secrets := filepath.Join(dir, "secret-env.json")
			if err := os.WriteFile(secrets, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			req, _ := model.EncodeCompact(model.GuestRequest{SchemaVersion: 2, TimeoutSecs: 30, RunAsRoot: true, SecretEnvFile: secrets,
				Command: `test -e ` + secrets + ` && s=present || s=gone; echo "$API_TOKEN|$OTHER|$s"`})
			code, _, stdout, stderr := runRequest(t, string(req))
			_, stdout, _ = strings.Cut(stdout, "\n") // after the booted line
			if code != tc.wantCode || stdout != tc.wantOut || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, tc.wantCode, tc.wantOut, tc.wantErr)
			}
			if strings.Contains(stderr, "/evil") {
				t.Errorf("a secret value is in the error: %q", stderr)
			}
		})
	}
}

// fullDisk takes n bytes, then refuses every write as a full disk does.
type fullDisk struct{ n int }

func (f *fullDisk) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, syscall.EDQUOT
	}
	f.n -= len(p)
	return len(p), nil
}

// A guest log that fills up mid-run (the guest's disk is full) costs the
// log, not the output: every line still reaches the runner's stdout, and
// stderr says what happened to the log.
func TestRunnerOutputOutlivesAFullGuestLog(t *testing.T) {
	for _, n := range []int{0, 8, 1 << 20} {
		t.Run(fmt.Sprintf("log takes %d bytes", n), func(t *testing.T) {
			var o, e buf
			r := &Runner{Root: newGuestRoot(t), Environ: incusExecEnv, Stdout: &o, Stderr: &e}
			req := model.GuestRequest{SchemaVersion: 2, Command: "echo first line; echo second line >&2; echo third", TimeoutSecs: 30, RunAsRoot: true}
			code, err := r.run(t.Context(), req, []string{"PATH=/usr/bin:/bin"}, &fullDisk{n: n})
			if err != nil || code != 0 {
				t.Fatalf("run = %d, %v", code, err)
			}
			if got, want := o.String(), "first line\nsecond line\nthird\n"; got != want {
				t.Errorf("stdout %q, want %q", got, want)
			}
			full := n < len("first line\nsecond line\nthird\n")
			if got := strings.Contains(e.String(), "[pikaci] guest log: disk quota exceeded"); got != full {
				t.Errorf("stderr %q: says the log is full = %v, want %v", e.String(), got, full)
			}
		})
	}
}
