package incus

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestSocketPath(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		env      map[string]string
		standard []string
		want     string
		wantErr  bool
	}{
		{name: "env wins", env: map[string]string{"INCUS_SOCKET": "/x/y.sock"}, standard: []string{sock}, want: "/x/y.sock"},
		{name: "blank env ignored", env: map[string]string{"INCUS_SOCKET": "  "}, standard: []string{sock}, want: sock},
		{name: "first existing socket", standard: []string{filepath.Join(dir, "missing"), plain, sock}, want: sock},
		{name: "none", standard: []string{filepath.Join(dir, "missing"), plain}, wantErr: true},
	}
	saved := StandardSockets
	t.Cleanup(func() { StandardSockets = saved })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			StandardSockets = tc.standard
			got, err := SocketPath(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "INCUS_SOCKET") {
					t.Fatalf("SocketPath() = %q, %v; want an error naming INCUS_SOCKET", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("SocketPath() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestEnvelopes(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string // fixture name, or raw body when it has no .json suffix
		wantStatus int    // StatusCode(err); 0 = not a *StatusError
		wantErr    string // substring of the error; "" = success
	}{
		{name: "sync", status: 200, body: "server.json"},
		{name: "error envelope 404", status: 404, body: "error_404.json", wantStatus: 404, wantErr: "Instance not found"},
		{name: "error envelope 500", status: 500, body: "error_500.json", wantStatus: 500, wantErr: "disk I/O error"},
		{name: "error envelope with HTTP 200", status: 200, body: "wait_timeout.json", wantStatus: 500, wantErr: "context deadline exceeded"},
		{name: "garbled with HTTP 200", status: 200, body: "garbled.json", wantErr: "undecodable response"},
		{name: "unknown type", status: 200, body: "unknown_type.json", wantErr: `unknown response type "stream"`},
		{name: "bare HTTP 502", status: 502, body: "<html>bad gateway</html>", wantStatus: 502, wantErr: "bad gateway"},
		{name: "empty 200", status: 200, body: "", wantErr: "undecodable response"},
		{name: "sync without metadata", status: 200, body: `{"type":"sync","status":"Success","status_code":200,"metadata":null}`, wantErr: "response has no metadata"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			body := []byte(tc.body)
			if strings.HasSuffix(tc.body, ".json") {
				body = fixture(t, tc.body)
			}
			f.handle("GET", "/1.0", func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				w.Write(body)
			})
			s, err := f.client().Server(t.Context())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Server() error = %v", err)
				}
				if s.Environment.ServerVersion != "6.0.4" || !s.Supports(TypeContainer) || s.Supports(TypeVirtualMachine) {
					t.Fatalf("Server() = %+v, want version 6.0.4, containers only", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Server() error = %v, want it to contain %q", err, tc.wantErr)
			}
			if got := StatusCode(err); got != tc.wantStatus {
				t.Fatalf("StatusCode(%v) = %d, want %d", err, got, tc.wantStatus)
			}
			if !strings.HasPrefix(err.Error(), "incus: get server info: ") {
				t.Fatalf("error %q does not name the call", err)
			}
		})
	}
}

func TestStatusErrorClassification(t *testing.T) {
	tests := []struct {
		err                     error
		notFound, conflict, bad bool
	}{
		{err: &StatusError{Status: 404}, notFound: true},
		{err: &StatusError{Status: 409}, conflict: true},
		{err: &StatusError{Status: 400}, bad: true},
		{err: errors.Join(errors.New("x"), &StatusError{Status: 404}), notFound: true},
		{err: errors.New("404")},
		{err: nil},
	}
	for _, tc := range tests {
		if IsNotFound(tc.err) != tc.notFound || IsConflict(tc.err) != tc.conflict || IsBadRequest(tc.err) != tc.bad {
			t.Errorf("classify(%v) = %v %v %v, want %v %v %v", tc.err, IsNotFound(tc.err), IsConflict(tc.err),
				IsBadRequest(tc.err), tc.notFound, tc.conflict, tc.bad)
		}
	}
	se := &StatusError{Method: "GET", Path: "/instances/x", Status: 404, Msg: "Instance not found"}
	if got, want := se.Error(), "GET /1.0/instances/x: 404 not found: Instance not found"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSlowAnswerHonoursContext(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	defer close(release)
	f.handle("GET", "/1.0", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := f.client().Server(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Server() error = %v, want context.DeadlineExceeded", err)
	}
}

func TestProjectQuery(t *testing.T) {
	f := newFake(t)
	f.reply("GET", "/1.0/instances/r1", 200, "instance.json")
	inst, err := f.client().GetInstance(t.Context(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if inst.Name != "r1" || inst.Status != "Running" || inst.Config["user.pika.guest_role"] != "pikaci-runner" {
		t.Fatalf("GetInstance() = %+v", inst)
	}
	if got := f.requests(); len(got) != 1 || got[0] != "GET /1.0/instances/r1?project=p" {
		t.Fatalf("requests = %q, want the project in the query", got)
	}
}

const opPath = "/1.0/operations/5a0e0c52-3f3c-4a8e-9d4e-1b1e9a3d2f10"

func TestWaitOperation(t *testing.T) {
	tests := []struct {
		name       string
		wait       []string // fixtures answered by /wait in turn
		get        string   // fixture answered by GET of the operation ("" = 404)
		wantErr    string
		wantStatus string
		wantCalls  []string
		wantLimits uint64 // waits that ended at their limit, operation running
	}{
		{
			name: "success", wait: []string{"operation_success.json"}, wantStatus: "Success",
			wantCalls: []string{"GET " + opPath + "/wait"},
		},
		{
			name: "timed out wait is retried", wait: []string{"wait_timeout.json", "operation_success.json"},
			get: "operation_running.json", wantStatus: "Success", wantLimits: 1,
			wantCalls: []string{"GET " + opPath + "/wait", "GET " + opPath, "GET " + opPath + "/wait"},
		},
		{
			name: "failed wait fetches the operation", wait: []string{"wait_failure.json"},
			get: "operation_failure_duplicate.json", wantStatus: "Failure", wantErr: "UNIQUE constraint failed",
			wantCalls: []string{"GET " + opPath + "/wait", "GET " + opPath},
		},
		{
			name: "operation gone", wait: []string{"wait_failure.json"}, get: "",
			wantErr: "400 bad request: Command not found",
		},
		{
			name: "running after wait is waited again", wait: []string{"operation_running.json", "operation_success.json"},
			wantStatus: "Success", wantLimits: 1,
			wantCalls: []string{"GET " + opPath + "/wait", "GET " + opPath + "/wait"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.sequence("GET", opPath+"/wait", tc.wait...)
			if tc.get != "" {
				f.reply("GET", opPath, 200, tc.get)
			}
			c := f.client()
			op, err := c.WaitOperation(t.Context(), "5a0e0c52-3f3c-4a8e-9d4e-1b1e9a3d2f10")
			if n := c.WaitLimits(); n != tc.wantLimits {
				t.Errorf("WaitLimits() = %d, want %d", n, tc.wantLimits)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("WaitOperation() error = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("WaitOperation() error = %v", err)
			}
			if tc.wantStatus != "" && (op == nil || op.Status != tc.wantStatus) {
				t.Fatalf("WaitOperation() = %+v, want status %s", op, tc.wantStatus)
			}
			if tc.wantCalls != nil {
				var got []string
				for _, r := range f.requests() {
					got = append(got, strings.SplitN(r, "?", 2)[0])
				}
				if !slices.Equal(got, tc.wantCalls) {
					t.Fatalf("requests = %q, want %q", got, tc.wantCalls)
				}
			}
		})
	}
}

func TestWaitOperationCancelAsksServer(t *testing.T) {
	f := newFake(t)
	cancelled := make(chan struct{})
	inFlight := make(chan struct{}, 1)
	f.handle("GET", opPath+"/wait", func(w http.ResponseWriter, r *http.Request) {
		inFlight <- struct{}{}
		<-r.Context().Done()
	})
	f.handle("DELETE", opPath, func(w http.ResponseWriter, r *http.Request) {
		close(cancelled)
		w.Write(fixture(t, "sync_empty.json"))
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		// Cancel once the wait is in flight.
		select {
		case <-inFlight:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, err := f.client().WaitOperation(ctx, "5a0e0c52-3f3c-4a8e-9d4e-1b1e9a3d2f10")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitOperation() error = %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	default:
		t.Fatalf("no DELETE of the operation; requests = %q", f.requests())
	}
}

func TestCreateInstance(t *testing.T) {
	tests := []struct {
		name         string
		post         string
		postStatus   int
		wait         string
		get          string
		wantConflict bool
		wantErr      string
	}{
		{name: "ok", post: "async_create.json", postStatus: 202, wait: "operation_success.json"},
		{name: "duplicate name", post: "async_create.json", postStatus: 202, wait: "wait_failure.json",
			get: "operation_failure_duplicate.json", wantConflict: true, wantErr: "UNIQUE constraint failed"},
		{name: "direct error", post: "error_500.json", postStatus: 500, wantErr: "500 internal server error: Failed to open database"},
		{name: "sync instead of async", post: "sync_empty.json", postStatus: 200, wantErr: `want an async response, got "sync"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var body []byte
			f.handle("POST", "/1.0/instances", func(w http.ResponseWriter, r *http.Request) {
				body = readAll(r)
				w.WriteHeader(tc.postStatus)
				w.Write(fixture(t, tc.post))
			})
			if tc.wait != "" {
				f.reply("GET", opPath+"/wait", 200, tc.wait)
			}
			if tc.get != "" {
				f.reply("GET", opPath, 200, tc.get)
			}
			err := f.client().CreateInstance(t.Context(), InstancesPost{
				Name: "r1", Type: TypeContainer, Source: InstanceSource{Type: "image", Alias: "pikaci/dev"},
				Config: map[string]string{"limits.cpu": "2"}, Profiles: []string{"default", "pika-agent-dev"}, Start: true,
			})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CreateInstance() error = %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CreateInstance() error = %v, want %q", err, tc.wantErr)
			}
			if IsConflict(err) != tc.wantConflict {
				t.Fatalf("IsConflict(%v) = %v, want %v", err, IsConflict(err), tc.wantConflict)
			}
			want := `{"name":"r1","type":"container","source":{"type":"image","alias":"pikaci/dev"},"config":{"limits.cpu":"2"},"profiles":["default","pika-agent-dev"],"start":true}`
			if string(body) != want {
				t.Fatalf("request body = %s, want %s", body, want)
			}
		})
	}
}

func TestListInstancesRechecksExactly(t *testing.T) {
	tests := []struct {
		name       string
		filters    []Filter
		wantServer string // the filter query sent; "" = none
		wantNames  []string
	}{
		{
			name:       "case-insensitive server match is narrowed",
			filters:    []Filter{{Field: "config.user.pika.guest_role", Value: "pikaci-runner"}},
			wantServer: "config.user.pika.guest_role eq pikaci-runner",
			wantNames:  []string{"r1", "r3"},
		},
		{
			name: "two filters",
			filters: []Filter{{Field: "config.user.pika.guest_role", Value: "pikaci-runner"},
				{Field: "status", Value: "Running"}},
			wantServer: "config.user.pika.guest_role eq pikaci-runner and status eq Running",
			wantNames:  []string{"r1", "r3"},
		},
		{
			name:      "value unsafe for the server is only checked here",
			filters:   []Filter{{Field: "config.user.pika.guest_role", Value: "a b"}},
			wantNames: []string{},
		},
		{
			name:      "empty value",
			filters:   []Filter{{Field: "name", Value: ""}},
			wantNames: []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var filter string
			f.handle("GET", "/1.0/instances", func(w http.ResponseWriter, r *http.Request) {
				filter = r.URL.Query().Get("filter")
				w.Write(fixture(t, "instances_list.json"))
			})
			got, err := f.client().ListInstances(t.Context(), tc.filters...)
			if err != nil {
				t.Fatal(err)
			}
			names := []string{}
			for _, i := range got {
				names = append(names, i.Name)
			}
			if !slices.Equal(names, tc.wantNames) {
				t.Errorf("ListInstances() = %q, want %q", names, tc.wantNames)
			}
			if filter != tc.wantServer {
				t.Errorf("server filter = %q, want %q", filter, tc.wantServer)
			}
		})
	}
	t.Run("unsupported field", func(t *testing.T) {
		f := newFake(t)
		_, err := f.client().ListInstances(t.Context(), Filter{Field: "user.x", Value: "y"})
		if err == nil || !strings.Contains(err.Error(), `unsupported filter field "user.x"`) {
			t.Fatalf("ListInstances() error = %v", err)
		}
	})
}

func TestDeleteInstance(t *testing.T) {
	tests := []struct {
		name      string
		deletes   []string // answers to DELETE in turn: fixture names
		wantCalls []string
	}{
		{
			name:      "stopped",
			deletes:   []string{"async_create.json"},
			wantCalls: []string{"DELETE /1.0/instances/r1", "GET " + opPath + "/wait"},
		},
		{
			name:    "running is force-stopped first",
			deletes: []string{"error_running.json", "async_create.json"},
			wantCalls: []string{"DELETE /1.0/instances/r1", "PUT /1.0/instances/r1/state", "GET " + opPath + "/wait",
				"DELETE /1.0/instances/r1", "GET " + opPath + "/wait"},
		},
		{
			name:    "missing is fine",
			deletes: []string{"error_404.json"},
			// Then it looks for a create still working on that name.
			wantCalls: []string{"DELETE /1.0/instances/r1", "GET /1.0/operations"},
		},
		{
			// A cancelled job can leave its create operation running.
			name:    "busy is tried again",
			deletes: []string{"error_busy.json", "error_busy.json", "async_create.json"},
			wantCalls: []string{"DELETE /1.0/instances/r1", "DELETE /1.0/instances/r1", "DELETE /1.0/instances/r1",
				"GET " + opPath + "/wait"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.sequence("DELETE", "/1.0/instances/r1", tc.deletes...)
			var state string
			f.handle("PUT", "/1.0/instances/r1/state", func(w http.ResponseWriter, r *http.Request) {
				state = string(readAll(r))
				w.WriteHeader(202)
				w.Write(fixture(t, "async_create.json"))
			})
			f.reply("GET", opPath+"/wait", 200, "operation_success.json")
			if err := f.client().DeleteInstance(t.Context(), "r1"); err != nil {
				t.Fatalf("DeleteInstance() error = %v", err)
			}
			var got []string
			for _, r := range f.requests() {
				got = append(got, strings.SplitN(r, "?", 2)[0])
			}
			if !slices.Equal(got, tc.wantCalls) {
				t.Fatalf("requests = %q, want %q", got, tc.wantCalls)
			}
			if state != "" && state != `{"action":"stop","timeout":-1,"force":true}` {
				t.Fatalf("state change = %s, want a forced stop", state)
			}
		})
	}
}

// TestDeleteInstanceBusyGivesUpWithTheContext: a create that keeps the
// instance busy ends the retries when ctx's deadline passes, with the busy
// answer and the deadline. The deadline passes while the fake server
// answers the second DELETE (deadlineAt), not on the wall clock, so a
// loaded machine cannot let it pass before the first answer.
func TestDeleteInstanceBusyGivesUpWithTheContext(t *testing.T) {
	f := newFake(t)
	ctx, expire := deadlineAt(t.Context())
	busy := fixture(t, "error_busy.json")
	var mu sync.Mutex
	n := 0
	f.handle("DELETE", "/1.0/instances/r1", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		if n++; n == 2 {
			expire()
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write(busy)
	})
	err := f.client().DeleteInstance(ctx, "r1")
	if err == nil || !strings.Contains(err.Error(), `is busy running a "create" operation`) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DeleteInstance() error = %v, want the busy error and the deadline", err)
	}
}

func TestForceStopAlreadyStopped(t *testing.T) {
	f := newFake(t)
	f.handle("PUT", "/1.0/instances/r1/state", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(400)
		w.Write([]byte(`{"type":"error","error_code":400,"error":"The instance is already stopped"}`))
	})
	if err := f.client().ForceStopInstance(t.Context(), "r1"); err != nil {
		t.Fatalf("ForceStopInstance() error = %v, want nil for a stopped instance", err)
	}
}

func TestConnectionsClosedAfterClose(t *testing.T) {
	f := newFake(t)
	f.reply("GET", "/1.0", 200, "server.json")
	f.reply("GET", "/1.0/instances/nope", 404, "error_404.json")
	c, err := NewUnix(f.sock)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := c.Server(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetInstance(t.Context(), "nope"); !IsNotFound(err) {
			t.Fatalf("GetInstance() error = %v, want not found", err)
		}
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for f.openConns() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after Close", f.openConns())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerInstanceTypes(t *testing.T) {
	tests := []struct {
		driver string
		want   []string
	}{
		{"lxc", []string{TypeContainer}},
		{"lxc | qemu", []string{TypeContainer, TypeVirtualMachine}},
		{"qemu", []string{TypeVirtualMachine}},
		{"", []string{}},
	}
	for _, tc := range tests {
		s := &Server{Environment: ServerEnvironment{Driver: tc.driver}}
		if got := s.InstanceTypes(); !slices.Equal(got, tc.want) {
			t.Errorf("InstanceTypes(%q) = %q, want %q", tc.driver, got, tc.want)
		}
	}
}

func readAll(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}

// TestWaitCommandIsNotAWaitLimit: a command's poll that ends at its limit
// is normal (a job runs as long as it runs), so it is neither counted nor
// warned about, while an operation's is both.
func TestWaitCommandIsNotAWaitLimit(t *testing.T) {
	for _, command := range []bool{false, true} {
		f := newFake(t)
		f.sequence("GET", opPath+"/wait", "operation_running.json", "operation_running.json", "operation_success.json")
		c := f.client()
		core, logs := observer.New(zap.DebugLevel)
		c.log = zap.New(core)
		if _, err := c.waitOperation(t.Context(), "5a0e0c52-3f3c-4a8e-9d4e-1b1e9a3d2f10", command); err != nil {
			t.Fatal(err)
		}
		warns := logs.FilterLevelExact(zap.WarnLevel).Len()
		wantLimits, wantWarns := uint64(2), 2
		if command {
			wantLimits, wantWarns = 0, 0
		}
		if c.WaitLimits() != wantLimits || warns != wantWarns {
			t.Errorf("command=%v: WaitLimits() = %d and %d warnings, want %d and %d", command, c.WaitLimits(), warns, wantLimits, wantWarns)
		}
	}
}
