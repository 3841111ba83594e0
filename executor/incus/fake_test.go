package incus

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fakeServer is an in-process HTTP server on a unix socket that answers
// with envelope fixtures, for what the real daemon won't do on demand:
// garbled envelopes, 500s, slow answers, the wait trap.
type fakeServer struct {
	t    *testing.T
	srv  *httptest.Server
	sock string

	mu     sync.Mutex
	routes map[string]http.HandlerFunc // "METHOD /1.0/path"
	log    []string                    // "METHOD /1.0/escaped/path?query" of each request
	conns  map[net.Conn]http.ConnState

	notFound []byte
}

// unixListener listens on a new unix socket, removed with the test.
func unixListener(t *testing.T) (string, net.Listener) {
	t.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "jci-incus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "incus.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return sock, l
}

func newFake(t *testing.T) *fakeServer {
	t.Helper()
	sock, l := unixListener(t)
	f := &fakeServer{t: t, sock: sock, routes: map[string]http.HandlerFunc{}, conns: map[net.Conn]http.ConnState{},
		notFound: fixture(t, "error_404.json")}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Listener.Close()
	f.srv.Listener = l
	f.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		f.mu.Lock()
		f.conns[c] = s
		f.mu.Unlock()
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	f.mu.Lock()
	entry := r.Method + " " + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		entry += "?" + r.URL.RawQuery
	}
	f.log = append(f.log, entry)
	h := f.routes[key]
	f.mu.Unlock()
	if h == nil {
		w.WriteHeader(http.StatusNotFound)
		w.Write(f.notFound)
		return
	}
	h(w, r)
}

// handle routes METHOD and an unescaped path (e.g. "/1.0/instances/r1").
func (f *fakeServer) handle(method, path string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[method+" "+path] = h
}

// reply routes to a fixed fixture answer.
func (f *fakeServer) reply(method, path string, status int, fixtureName string) {
	body := fixture(f.t, fixtureName)
	f.handle(method, path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	})
}

// sequence routes to fixtures answered in turn; the last one repeats.
func (f *fakeServer) sequence(method, path string, fixtureNames ...string) {
	bodies := make([][]byte, len(fixtureNames))
	for i, n := range fixtureNames {
		bodies[i] = fixture(f.t, n)
	}
	var mu sync.Mutex
	i := 0
	f.handle(method, path, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		body := bodies[min(i, len(bodies)-1)]
		i++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// requests returns the requests seen so far.
func (f *fakeServer) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// openConns counts connections not closed (or hijacked) yet.
func (f *fakeServer) openConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.conns {
		if s != http.StateClosed && s != http.StateHijacked {
			n++
		}
	}
	return n
}

func (f *fakeServer) client(opts ...Option) *Client {
	f.t.Helper()
	c, err := NewUnix(f.sock, append([]Option{WithProject("p")}, opts...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// fixture reads testdata/fixtures/incus/<name>.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", "incus", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deadlineCtx is a context whose deadline passes when the test says so:
// Done closes and Err is context.DeadlineExceeded, as for a deadline, but
// at a point of the test's choosing instead of a wall-clock time that a
// loaded machine may reach too early or too late.
type deadlineCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

// deadlineAt returns a context derived from parent and the func that
// makes its deadline pass.
func deadlineAt(parent context.Context) (context.Context, func()) {
	c := &deadlineCtx{Context: parent, done: make(chan struct{})}
	return c, func() { c.once.Do(func() { close(c.done) }) }
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.done }

func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
