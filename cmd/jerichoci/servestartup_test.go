package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"jerichoci/internal/backoff"
)

func TestSettling(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no server listens yet", fmt.Errorf("connect to NATS at x: %w", nats.ErrNoServers), true},
		{"a request unanswered in time (the issue's)", fmt.Errorf("create or update stream JERICHOCI_JOBS: %w", context.DeadlineExceeded), true},
		{"no meta leader yet", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{"peers not known yet", fmt.Errorf("stream: %w", &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}), true},
		{"insufficient resources", &jetstream.APIError{Code: 503, ErrorCode: 10023}, true},
		{"credentials refused", fmt.Errorf("connect: %w", nats.ErrAuthorization), false},
		{"a stream of another configuration", &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use with a different configuration"}, false},
		{"replicas on a single server", &jetstream.APIError{Code: 500, ErrorCode: 10074, Description: "replicas > 1 not supported in non-clustered mode"}, false},
		{"anything else", errors.New("permission violation"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := settling(tc.err); got != tc.want {
				t.Errorf("settling(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestUntilSettled(t *testing.T) {
	old := natsStartupBackoff
	natsStartupBackoff = backoff.Backoff{First: time.Millisecond, Max: time.Millisecond}
	t.Cleanup(func() { natsStartupBackoff = old })
	settlingErr := fmt.Errorf("create or update stream JERICHOCI_JOBS: %w", context.DeadlineExceeded)
	for _, tc := range []struct {
		name      string
		errs      []error // one per try; past the end: success
		wait      time.Duration
		wantTries int
		wantErr   string
	}{
		{"ready at once", nil, time.Minute, 1, ""},
		{"settles on the third try", []error{settlingErr, settlingErr}, time.Minute, 3, ""},
		{"a permanent error fails at once", []error{nats.ErrAuthorization}, time.Minute, 1, "authorization violation"},
		{"a settling error then a permanent one", []error{settlingErr, nats.ErrAuthorization}, time.Minute, 2, "authorization violation"},
		{"no waiting with --nats-wait 0", []error{settlingErr}, 0, 1, "--nats-wait 0s"},
		{"stopped while waiting", []error{settlingErr, settlingErr}, -1, 1, "stopped while waiting for NATS: set up the queue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := &startupPage{}
			tries := 0
			ctx, wait := t.Context(), tc.wait
			if wait < 0 { // serve stopped (a signal) during the first pause
				c, cancel := context.WithCancel(ctx)
				ctx, wait = c, time.Minute
				cancel()
			}
			_, err := untilSettled(ctx, "set up the queue", wait, zap.NewNop(), page, func(context.Context) (int, error) {
				tries++
				if tries <= len(tc.errs) {
					return 0, tc.errs[tries-1]
				}
				return 1, nil
			})
			if tries != tc.wantTries {
				t.Errorf("tries = %d, want %d", tries, tc.wantTries)
			}
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one with %q", err, tc.wantErr)
			}
			if tc.wantTries > 1 && tc.wantErr == "" && !strings.Contains(page.reason, "waiting for NATS to set up the queue") {
				t.Errorf("the startup page's reason = %q", page.reason)
			}
		})
	}
}

func TestStartupPage(t *testing.T) {
	p := &startupPage{}
	p.setReason("waiting for NATS to set up the queue (try 1 failed: context deadline exceeded); next try in 1s")
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/readyz", 503, "not ready: waiting for NATS to set up the queue"},
		{"/healthz", 200, "ok"},
		{"/", 503, "not ready"},
	} {
		if code, body := get(tc.path); code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s = %d %q, want %d with %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	p.become(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "the status page") }), nil)
	if code, body := get("/readyz"); code != 200 || body != "the status page" {
		t.Errorf("after become: GET /readyz = %d %q", code, body)
	}
}
