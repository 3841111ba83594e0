package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

func TestClosersCloseInReverseAndReportEveryError(t *testing.T) {
	tests := []struct {
		name      string
		fail      map[string]bool // which closes fail
		wantOrder string
		wantErr   []string
	}{
		{name: "all close", wantOrder: "c b a"},
		{name: "one fails, the rest still close", fail: map[string]bool{"b": true}, wantOrder: "c b a",
			wantErr: []string{"close b: b broke"}},
		{name: "two fail", fail: map[string]bool{"a": true, "c": true}, wantOrder: "c b a",
			wantErr: []string{"close c: c broke", "close a: a broke"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s closers
			var order []string
			for _, n := range []string{"a", "b", "c"} {
				s.push(n, func() error {
					order = append(order, n)
					if tc.fail[n] {
						return errors.New(n + " broke")
					}
					return nil
				})
			}
			err := s.close()
			if got := strings.Join(order, " "); got != tc.wantOrder {
				t.Errorf("closed %q, want %q", got, tc.wantOrder)
			}
			if len(tc.wantErr) == 0 && err != nil {
				t.Errorf("close = %v, want nil", err)
			}
			if len(tc.wantErr) > 0 && (err == nil || err.Error() != strings.Join(tc.wantErr, "\n")) {
				t.Errorf("close = %v, want %q", err, tc.wantErr)
			}
			if err := s.close(); err != nil || len(order) != 3 {
				t.Errorf("second close ran again: %v, %q", err, order)
			}
		})
	}
}

// brokenListener fails every Accept: the HTTP server stops serving.
type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("accept broke") }

func TestServeHTTPSurfacesTheServeError(t *testing.T) {
	tests := []struct {
		name    string
		broken  bool
		wantErr string
	}{
		{name: "a clean shutdown"},
		{name: "serve failed", broken: true, wantErr: "serve: accept broke"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var l net.Listener = ln
			if tc.broken {
				l = brokenListener{ln}
			}
			// The failure is logged once Serve has returned: wait for that,
			// so the shutdown below does not win the race.
			stopped := make(chan struct{})
			var once sync.Once
			log := zaptest.NewLogger(t, zaptest.WrapOptions(zap.Hooks(func(e zapcore.Entry) error {
				if e.Level == zapcore.ErrorLevel {
					once.Do(func() { close(stopped) })
				}
				return nil
			})))
			closeFn := serveHTTP(context.WithoutCancel(t.Context()), &http.Server{Handler: http.NotFoundHandler()}, l, log)
			if tc.broken {
				<-stopped
			}
			err = closeFn()
			if tc.wantErr == "" && err != nil {
				t.Errorf("close = %v, want nil", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("close = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
