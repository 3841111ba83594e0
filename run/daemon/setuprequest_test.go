package daemon

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A set-up request that goes unanswered is sent again, and only such a
// request: an error the server gave is the caller's to classify, and a
// request is never sent again once the set-up's own context has ended.
// The requests here block until their bound ends (as a stalled JetStream
// request does) or answer at once; no wall clock decides a verdict.
func TestSetupRequestResendsOnlyUnanswered(t *testing.T) {
	refused := errors.New("nats: stream name already in use with a different configuration")
	tests := []struct {
		name        string
		outcomes    []error // per try: nil answers, errStall blocks until the bound
		wantTries   int
		wantResent  []int
		wantErr     error
		parentEnded bool
	}{
		{"answered at once", []error{nil}, 1, nil, nil, false},
		{"unanswered twice, then answered", []error{errStall, errStall, nil}, 3, []int{1, 2}, nil, false},
		{"a client-side timeout is unanswered too", []error{nats.ErrTimeout, nil}, 2, []int{1}, nil, false},
		{"no responders (a leader not elected yet) is sent again", []error{nats.ErrNoResponders, nil}, 2, []int{1}, nil, false},
		{"a refusal is returned at once", []error{refused, nil}, 1, nil, refused, false},
		{"unanswered, then refused", []error{errStall, refused}, 2, []int{1}, refused, false},
		{"the set-up stopped: no second try", []error{errStall, nil}, 1, nil, context.Canceled, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resent []int
			cfg := QueueConfig{RequestTimeout: time.Millisecond, Resent: func(what string, try int, err error) {
				if what != "create or update stream X" || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)) {
					t.Errorf("Resent(%q, %d, %v)", what, try, err)
				}
				resent = append(resent, try)
			}}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tries := 0
			err := cfg.setupRequest(ctx, "create or update stream X", func(rctx context.Context) error {
				out := tc.outcomes[tries]
				tries++
				if tc.parentEnded {
					cancel()
				}
				if out == errStall {
					<-rctx.Done()
					return fmt.Errorf("stream X: %w", rctx.Err())
				}
				return out
			})
			if tries != tc.wantTries || fmt.Sprint(resent) != fmt.Sprint(tc.wantResent) {
				t.Errorf("tries %d, resent after %v; want %d, %v", tries, resent, tc.wantTries, tc.wantResent)
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("error %v, want %v", err, tc.wantErr)
			case err != nil && err.Error()[:len("create or update stream X: ")] != "create or update stream X: ":
				t.Errorf("error %q does not name the request", err)
			}
		})
	}
}

// errStall marks a try that blocks until its bound ends.
var errStall = errors.New("stall")
