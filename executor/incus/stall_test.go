package incus

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// peekingListener accepts as incusd 6.0's unix socket does: inside the
// accept loop it reads the first 8 bytes of each new connection (to tell
// STARTTLS from HTTP) before it hands the connection over, so a silent
// connection holds up every later one. Each peek's outcome goes to peeked.
type peekingListener struct {
	net.Listener
	peeked chan error
}

func (l *peekingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	_, err = r.Peek(8)
	l.peeked <- err
	return &peekedConn{Conn: c, r: r}, nil
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestNoSilentConnectionStallsIncusd: a request cancelled while its
// connection is being dialled must not leave that connection open and
// silent, because incusd's accept loop would wait on it (the 30 s stalls:
// docs/INCUS.md, "The traps it handles"). The dial is held until the
// request is gone, so the transport has a connection nobody asked for;
// it must close it at once rather than keep it idle. Without the fix the
// connection stays open for the transport's idle timeout (30 s); the
// test's bound of 10 s is for a machine under any load, where closing a
// socket takes microseconds.
func TestNoSilentConnectionStallsIncusd(t *testing.T) {
	sock, inner := unixListener(t)
	l := &peekingListener{Listener: inner, peeked: make(chan error, 16)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(fixture(t, "server.json"))
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	dialing, release := make(chan struct{}), make(chan struct{})
	var dialled atomic.Bool
	var d net.Dialer
	c := newClient(unixTransport(func(context.Context) (net.Conn, error) {
		if !dialled.Swap(true) {
			close(dialing)
			<-release
		}
		return d.DialContext(context.Background(), "unix", sock)
	}), "http://incus.socket", nil)
	t.Cleanup(func() { c.Close() })

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := c.Server(ctx); done <- err }()
	<-dialing
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Server() = %v, want the cancel", err)
	}
	close(release) // the dial completes for a request that is gone

	select {
	case err := <-l.peeked:
		if err != io.EOF {
			t.Fatalf("the connection of the cancelled request sent something (peek: %v), want it closed unused", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client keeps a connection open without a request on it: incusd's accept loop waits on it and serves nobody")
	}
	// The server accepts again: the next request goes through.
	if _, err := c.Server(t.Context()); err != nil {
		t.Fatalf("Server() after the cancelled request = %v", err)
	}
}
