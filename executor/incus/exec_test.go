package incus

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	execOp     = "0b7d1c7e-9c1a-4f55-a1e0-6f0b7cf1e2aa"
	execOpPath = "/1.0/operations/" + execOp
	execLogs   = "/1.0/instances/r1/logs/exec-output/exec_" + execOp
)

// growingFile is a log file the fake server serves with Range support.
type growingFile struct {
	mu   sync.Mutex
	data []byte
}

func (g *growingFile) append(s string) {
	g.mu.Lock()
	g.data = append(g.data, s...)
	g.mu.Unlock()
}

func (g *growingFile) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	data := append([]byte(nil), g.data...)
	g.mu.Unlock()
	http.ServeContent(w, r, "log", time.Time{}, bytes.NewReader(data))
}

// notifyWriter signals each write.
type notifyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.buf.Write(p)
	select {
	case n.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (n *notifyWriter) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.buf.String()
}

// TestExecFollowsOutputLive: the command only ends after its first output
// line reached our writer, which needs the logs to be read while it runs.
func TestExecFollowsOutputLive(t *testing.T) {
	f := newFake(t)
	stdout, stderr := &growingFile{}, &growingFile{}
	stdout.append("line 1\n")
	finish := make(chan struct{})
	var body []byte
	var ranges []string
	var mu sync.Mutex
	f.handle("POST", "/1.0/instances/r1/exec", func(w http.ResponseWriter, r *http.Request) {
		body = readAll(r)
		w.WriteHeader(202)
		w.Write(fixture(t, "exec_async.json"))
	})
	success := fixture(t, "operation_exec_return_0.json")
	f.handle("GET", execOpPath+"/wait", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-finish:
			w.Write(success)
		case <-r.Context().Done():
		}
	})
	f.handle("GET", execLogs+".stdout", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		stdout.serve(w, r)
	})
	f.handle("GET", execLogs+".stderr", stderr.serve)
	var deleted []string
	for _, p := range []string{execLogs + ".stdout", execLogs + ".stderr"} {
		f.handle("DELETE", p, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			deleted = append(deleted, r.URL.Path)
			mu.Unlock()
			w.Write(fixture(t, "sync_empty.json"))
		})
	}

	out := &notifyWriter{wrote: make(chan struct{}, 1)}
	var errOut bytes.Buffer
	go func() {
		select {
		case <-out.wrote:
		case <-t.Context().Done():
			return
		}
		stdout.append("line 2\n")
		stderr.append("warning\n")
		close(finish)
	}()
	c := f.client(WithExecPollInterval(5 * time.Millisecond))
	code, err := c.Exec(t.Context(), "r1", ExecRequest{
		Command: []string{"bash", "-c", "echo"}, Env: map[string]string{"A": "1"}, Cwd: "/tmp", User: 1000, Group: 1000,
	}, out, &errOut)
	if err != nil || code != 0 {
		t.Fatalf("Exec() = %d, %v; want 0, nil", code, err)
	}
	if got := out.String(); got != "line 1\nline 2\n" {
		t.Errorf("stdout = %q, want both lines once", got)
	}
	if got := errOut.String(); got != "warning\n" {
		t.Errorf("stderr = %q", got)
	}
	want := `{"command":["bash","-c","echo"],"environment":{"A":"1"},"wait-for-websocket":false,"interactive":false,"record-output":true,"cwd":"/tmp","user":1000,"group":1000}`
	if string(body) != want {
		t.Errorf("exec body = %s, want %s", body, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(ranges, "bytes=7-") {
		t.Errorf("stdout reads used ranges %q, want one from byte 7", ranges)
	}
	if len(deleted) != 2 {
		t.Errorf("deleted logs = %q, want both", deleted)
	}
}

func TestExecResults(t *testing.T) {
	tests := []struct {
		name     string
		wait     string // answer of /wait
		get      string // answer of GET operation ("" = none)
		wantCode int
		wantErr  string
	}{
		{name: "exit 0", wait: "operation_exec_return_0.json", wantCode: 0},
		{name: "exit 1 is no error", wait: "operation_exec_return_1.json", wantCode: 1},
		{name: "command not found through the wait trap", wait: "wait_failure.json", get: "operation_exec_failure_127.json", wantCode: 127},
		{name: "failure without exit code", wait: "wait_failure.json", get: "operation_exec_failure_noreturn.json",
			wantCode: -1, wantErr: "Failed to retrieve PID"},
		{name: "success without exit code", wait: "operation_success.json", wantCode: -1, wantErr: "no exit code"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.reply("POST", "/1.0/instances/r1/exec", 202, "exec_async.json")
			f.reply("GET", execOpPath+"/wait", 200, tc.wait)
			if tc.get != "" {
				f.reply("GET", execOpPath, 200, tc.get)
			}
			out := &growingFile{data: []byte("hello\n")}
			f.handle("GET", execLogs+".stdout", out.serve)
			f.handle("GET", execLogs+".stderr", (&growingFile{}).serve)
			f.reply("DELETE", execLogs+".stdout", 200, "sync_empty.json")
			f.reply("DELETE", execLogs+".stderr", 200, "sync_empty.json")
			var stdout bytes.Buffer
			code, err := f.client().Exec(t.Context(), "r1", ExecRequest{Command: []string{"x"}}, &stdout, nil)
			if code != tc.wantCode {
				t.Errorf("Exec() code = %d, want %d", code, tc.wantCode)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Exec() error = %v", err)
				}
				if stdout.String() != "hello\n" {
					t.Errorf("stdout = %q", stdout.String())
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Exec() error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestExecInstanceNotRunning(t *testing.T) {
	f := newFake(t)
	f.handle("POST", "/1.0/instances/r1/exec", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(400)
		w.Write([]byte(`{"type":"error","error_code":400,"error":"Instance is not running"}`))
	})
	code, err := f.client().Exec(t.Context(), "r1", ExecRequest{Command: []string{"true"}}, nil, nil)
	if code != -1 || !IsBadRequest(err) || !strings.Contains(err.Error(), `incus: exec in instance "r1"`) {
		t.Fatalf("Exec() = %d, %v; want -1 and a 400 naming the instance", code, err)
	}
}
