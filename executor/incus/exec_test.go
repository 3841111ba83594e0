package incus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sharedLog is written by the writers of both streams without a lock of
// its own: the race detector and the overlap count catch two writes at
// once, which Exec promises not to do.
type sharedLog struct {
	order    []string // stream of each write, in order
	inWrite  atomic.Int32
	overlaps atomic.Int32
	late     atomic.Int32 // writes after Exec returned
}

// streamRecorder is the writer of one stream over a sharedLog.
type streamRecorder struct {
	log  *sharedLog
	name string
	buf  *bytes.Buffer
	// first, when set, runs before the first write.
	first    func()
	once     sync.Once
	returned chan struct{} // closed when Exec returned
}

func (s *streamRecorder) Write(p []byte) (int, error) {
	if s.first != nil {
		s.once.Do(s.first)
	}
	select {
	case <-s.returned:
		s.log.late.Add(1)
	default:
	}
	if !s.log.inWrite.CompareAndSwap(0, 1) {
		s.log.overlaps.Add(1)
	}
	runtime.Gosched()
	s.buf.Write(p)
	s.log.order = append(s.log.order, s.name)
	s.log.inWrite.Store(0)
	return len(p), nil
}

// pattern returns n bytes of a repeated text.
func pattern(n int) []byte {
	return bytes.Repeat([]byte("0123456789abcdef\n"), n/17+1)[:n]
}

func TestExecOutput(t *testing.T) {
	big := pattern(8 << 20)
	var lines, errLines strings.Builder
	for i := range 50 {
		fmt.Fprintf(&lines, "o%d\n", i)
		fmt.Fprintf(&errLines, "e%d\n", i)
	}
	tests := []struct {
		name       string
		run        func(c *fakeCmd)
		gate       bool // the first write waits until the operation is over, and Exec returned (bounded)
		nilWriters bool
		wantStdout []byte
		wantStderr string
		wantCode   int
	}{
		{name: "both streams in order", run: func(c *fakeCmd) {
			for i := range 50 {
				c.Stdout(fmt.Sprintf("o%d\n", i))
				c.Stderr(fmt.Sprintf("e%d\n", i))
			}
			c.Exit(0)
		}, wantStdout: []byte(lines.String()), wantStderr: errLines.String()},
		{name: "8 MiB in messages of many sizes", run: func(c *fakeCmd) {
			sizes := []int{1, 4095, 32 << 10, 1 << 20, 65537, 3}
			for off, i := 0, 0; off < len(big); i++ {
				n := min(sizes[i%len(sizes)], len(big)-off)
				c.write("1", big[off:off+n])
				off += n
			}
			c.Stderr("done\n")
			c.Exit(0)
		}, wantStdout: big, wantStderr: "done\n"},
		{name: "output read after the operation ended", gate: true, run: func(c *fakeCmd) {
			c.Stdout("a\n")
			c.Stderr("b\n")
			c.Stdout("c\n")
			c.Exit(2)
		}, wantStdout: []byte("a\nc\n"), wantStderr: "b\n", wantCode: 2},
		{name: "sockets left open after the end-of-stream messages", run: func(c *fakeCmd) {
			c.Stdout("out\n")
			c.ExitLeavingSocketsOpen(0)
		}, wantStdout: []byte("out\n")},
		{name: "closed without end-of-stream messages", run: func(c *fakeCmd) {
			c.Stdout("last words\n")
			c.ExitWithoutEndOfStream(0)
		}, wantStdout: []byte("last words\n")},
		{name: "no output", run: func(c *fakeCmd) { c.Exit(0) }, wantStdout: []byte{}},
		{name: "nil writers", nilWriters: true, run: func(c *fakeCmd) {
			c.Stdout("dropped")
			c.Stderr("dropped")
			c.Exit(1)
		}, wantCode: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			x := newFakeExec(t, f, tc.run)
			log := &sharedLog{}
			returned := make(chan struct{})
			stdout := &streamRecorder{log: log, name: "stdout", buf: &bytes.Buffer{}, returned: returned}
			stderr := &streamRecorder{log: log, name: "stderr", buf: &bytes.Buffer{}, returned: returned}
			if tc.gate {
				// The output is held until the command is over; then
				// a second more, or until Exec returns: it must not.
				// (stderr waits on the lock meanwhile.)
				stdout.first = func() {
					select {
					case <-x.ended:
					case <-time.After(30 * time.Second):
						t.Error("the operation did not end while the output waited")
					}
					select {
					case <-returned:
					case <-time.After(time.Second):
					}
				}
			}
			var code int
			var err error
			if tc.nilWriters {
				code, err = f.client().Exec(t.Context(), "r1", ExecRequest{Command: []string{"x"}}, nil, nil)
			} else {
				code, err = f.client().Exec(t.Context(), "r1", ExecRequest{Command: []string{"x"}}, stdout, stderr)
			}
			close(returned)
			if err != nil || code != tc.wantCode {
				t.Fatalf("Exec() = %d, %v; want %d, nil", code, err, tc.wantCode)
			}
			if tc.nilWriters {
				return
			}
			if got := stdout.buf.Bytes(); !bytes.Equal(got, tc.wantStdout) {
				t.Errorf("stdout: %d bytes, want %d; equal: false (start %q)", len(got), len(tc.wantStdout), got[:min(len(got), 40)])
			}
			if got := stderr.buf.String(); got != tc.wantStderr {
				t.Errorf("stderr = %q, want %q", got, tc.wantStderr)
			}
			if n := log.overlaps.Load(); n != 0 {
				t.Errorf("%d writes overlapped", n)
			}
			if n := log.late.Load(); n != 0 {
				t.Errorf("%d writes after Exec returned", n)
			}
		})
	}
}

// TestExecRequest: the body of the POST, the websocket requests (the
// client's project, one per secret, the control socket first) and the end
// of stdin.
func TestExecRequest(t *testing.T) {
	f := newFake(t)
	x := newFakeExec(t, f, func(c *fakeCmd) { c.Exit(0) })
	code, err := f.client().Exec(t.Context(), "r1", ExecRequest{
		Command: []string{"bash", "-c", "echo"}, Env: map[string]string{"A": "1"}, Cwd: "/tmp", User: 1000, Group: 1000,
	}, nil, nil)
	if err != nil || code != 0 {
		t.Fatalf("Exec() = %d, %v", code, err)
	}
	body, controls, stdinEnd, controlClosed := x.record()
	want := `{"command":["bash","-c","echo"],"environment":{"A":"1"},"wait-for-websocket":true,"interactive":false,"record-output":false,"cwd":"/tmp","user":1000,"group":1000}`
	if body != want {
		t.Errorf("exec body = %s, want %s", body, want)
	}
	if stdinEnd != "empty text message" {
		t.Errorf("stdin ended by %s, want an empty text message", stdinEnd)
	}
	if len(controls) != 0 || controlClosed {
		t.Errorf("control messages %q, dropped while running: %v; want none", controls, controlClosed)
	}
	var ws []string
	for _, r := range f.requests() {
		if strings.Contains(r, "/websocket") {
			ws = append(ws, r)
		}
	}
	path := "GET /1.0/operations/" + fakeExecOp + "/websocket?project=p&secret="
	wantWS := []string{path + "secret-3-control", path + "secret-0-0", path + "secret-1-1", path + "secret-2-2"}
	if !slices.Equal(ws, wantWS) {
		t.Errorf("websocket requests = %q, want %q", ws, wantWS)
	}
}

func TestExecResults(t *testing.T) {
	ret := func(n int) *int { return &n }
	tests := []struct {
		name     string
		run      func(c *fakeCmd)
		wantCode int
		wantErr  string
	}{
		{name: "exit 0", run: func(c *fakeCmd) { c.Exit(0) }},
		{name: "exit 3 is no error", run: func(c *fakeCmd) { c.Exit(3) }, wantCode: 3},
		{name: "command not found through the wait trap", run: func(c *fakeCmd) { c.Fail(ret(127), "Command not found") }, wantCode: 127},
		{name: "command not executable", run: func(c *fakeCmd) { c.Fail(ret(126), "Command not executable") }, wantCode: 126},
		{name: "failure without exit code", run: func(c *fakeCmd) { c.Fail(nil, "Failed to retrieve PID of executing child process") },
			wantCode: -1, wantErr: "Failed to retrieve PID"},
		{name: "success without exit code", run: func(c *fakeCmd) { c.ExitRaw("null") }, wantCode: -1, wantErr: "no exit code"},
		{name: "undecodable result", run: func(c *fakeCmd) { c.ExitRaw(`{"return":"zero"}`) }, wantCode: -1, wantErr: "decode exec result"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			newFakeExec(t, f, func(c *fakeCmd) {
				c.Stdout("hello\n")
				tc.run(c)
			})
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
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), `incus: exec in instance "r1": `) {
				t.Fatalf("Exec() error = %v, want %q naming the instance", err, tc.wantErr)
			}
		})
	}
}

// signalMsg is the control message for a signal.
func signalMsg(sig int) string { return fmt.Sprintf(`{"command":"signal","signal":%d}`, sig) }

// TestExecCancel: when the context ends, the command gets SIGTERM, then
// SIGKILL after the grace period, and Exec returns the context's error
// once the command is over, with all of its output.
func TestExecCancel(t *testing.T) {
	tests := []struct {
		name         string
		deadline     bool
		onSignal     func(c *fakeCmd, sig int) bool // true: the command ended
		wantControls []string
		wantStdout   string
		wantErr      error
	}{
		{name: "ends on SIGTERM", onSignal: func(c *fakeCmd, sig int) bool {
			c.Stdout("bye\n")
			c.Exit(143)
			return true
		}, wantControls: []string{signalMsg(15)}, wantStdout: "started\nbye\n", wantErr: context.Canceled},
		{name: "ignores SIGTERM", onSignal: func(c *fakeCmd, sig int) bool {
			if sig != 9 {
				c.Stdout("ignored\n")
				return false
			}
			c.Exit(137)
			return true
		}, wantControls: []string{signalMsg(15), signalMsg(9)}, wantStdout: "started\nignored\n", wantErr: context.Canceled},
		{name: "deadline", deadline: true, onSignal: func(c *fakeCmd, sig int) bool {
			c.Exit(143)
			return true
		}, wantControls: []string{signalMsg(15)}, wantStdout: "started\n", wantErr: context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			x := newFakeExec(t, f, func(c *fakeCmd) {
				c.Stdout("started\n")
				for sig := range c.Signals {
					if tc.onSignal(c, sig) {
						return
					}
				}
			})
			// The context ends once the command has printed, whatever the
			// machine's load: as a cancel, or as a deadline passing then
			// (deadlineAt), never on a wall-clock time that could come
			// before the command started.
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.deadline {
				ctx, cancel = deadlineAt(t.Context())
			}
			stdout := &notifyWriter{wrote: make(chan struct{}, 1)}
			go func() {
				select {
				case <-stdout.wrote:
					cancel()
				case <-ctx.Done():
				}
			}()
			code, err := f.client().Exec(ctx, "r1", ExecRequest{Command: []string{"x"}, KillGrace: 20 * time.Millisecond}, stdout, nil)
			if code != -1 || !errors.Is(err, tc.wantErr) || !strings.HasPrefix(err.Error(), `incus: exec in instance "r1": `) {
				t.Fatalf("Exec() = %d, %v; want -1 and an error wrapping %v", code, err, tc.wantErr)
			}
			_, controls, _, controlClosed := x.record()
			if !slices.Equal(controls, tc.wantControls) || controlClosed {
				t.Errorf("control messages %q (socket dropped while running: %v), want %q", controls, controlClosed, tc.wantControls)
			}
			if got := stdout.String(); got != tc.wantStdout {
				t.Errorf("stdout = %q, want %q", got, tc.wantStdout)
			}
		})
	}
}

// TestExecCancelCommandNeverEnds: after SIGKILL the wait is bounded; then
// the control socket is dropped (incusd kills the command when it goes)
// and Exec returns. Not parallel: it shortens execEndWait.
func TestExecCancelCommandNeverEnds(t *testing.T) {
	defer func(d time.Duration) { execEndWait = d }(execEndWait)
	execEndWait = 50 * time.Millisecond
	f := newFake(t)
	x := newFakeExec(t, f, func(c *fakeCmd) {
		c.Stdout("started\n")
		for range c.Signals {
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout := &notifyWriter{wrote: make(chan struct{}, 1)}
	go func() {
		select {
		case <-stdout.wrote:
			cancel()
		case <-ctx.Done():
		}
	}()
	code, err := f.client().Exec(ctx, "r1", ExecRequest{Command: []string{"x"}, KillGrace: 10 * time.Millisecond}, stdout, nil)
	if code != -1 || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not seen ending") {
		t.Fatalf("Exec() = %d, %v; want -1 and an error wrapping context.Canceled", code, err)
	}
	// The fake notes the dropped control socket when its reader sees it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, controls, _, controlClosed := x.record()
		if controlClosed {
			if want := []string{signalMsg(15), signalMsg(9)}; !slices.Equal(controls, want) {
				t.Errorf("control messages %q, want %q", controls, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the control socket was not dropped")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestExecWriterFails: a writer's error stops the command like a
// cancellation and is returned.
func TestExecWriterFails(t *testing.T) {
	f := newFake(t)
	x := newFakeExec(t, f, func(c *fakeCmd) {
		c.Stdout("started\n")
		for range c.Signals {
			c.Exit(143)
			return
		}
	})
	var stderr bytes.Buffer
	code, err := f.client().Exec(t.Context(), "r1", ExecRequest{Command: []string{"x"}, KillGrace: time.Minute}, failingWriter{}, &stderr)
	if code != -1 || err == nil || !strings.Contains(err.Error(), `incus: exec in instance "r1": command stopped with SIGTERM: write stdout: disk full`) {
		t.Fatalf("Exec() = %d, %v; want -1 and the write error", code, err)
	}
	if _, controls, _, _ := x.record(); !slices.Equal(controls, []string{signalMsg(15)}) {
		t.Errorf("control messages %q, want SIGTERM", controls)
	}
}

func TestExecConnectErrors(t *testing.T) {
	tests := []struct {
		name       string
		fds        func(map[string]string)
		wantStatus int
		wantErr    string
	}{
		{name: "no secrets", fds: func(m map[string]string) { clear(m) },
			wantErr: "no websocket secret for fds 0, 1, 2, control in its metadata"},
		{name: "no control secret", fds: func(m map[string]string) { delete(m, "control") },
			wantErr: "no websocket secret for fds control in its metadata"},
		{name: "refused websocket", fds: func(m map[string]string) { m["1"] = "secret-wrong" }, wantStatus: 403,
			wantErr: "open websocket 1 (stdout): GET /1.0/operations/" + fakeExecOp + "/websocket: 403 forbidden: not authorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			x := newFakeExec(t, f, func(c *fakeCmd) { c.Exit(0) })
			tc.fds(x.fds)
			code, err := f.client().Exec(t.Context(), "r1", ExecRequest{Command: []string{"x"}}, io.Discard, io.Discard)
			if code != -1 || err == nil || !strings.Contains(err.Error(), tc.wantErr) || StatusCode(err) != tc.wantStatus {
				t.Fatalf("Exec() = %d, %v; want %q (status %d)", code, err, tc.wantErr, tc.wantStatus)
			}
			if strings.Contains(err.Error(), "secret-") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
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
