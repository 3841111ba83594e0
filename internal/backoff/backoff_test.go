package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextDoublesUpToTheCap(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration
	}{
		{name: "capped", b: Backoff{First: 100 * ms, Max: time.Second},
			want: []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}},
		{name: "cap not a power of two of first", b: Backoff{First: 20 * ms, Max: 50 * ms},
			want: []time.Duration{20 * ms, 40 * ms, 50 * ms, 50 * ms}},
		{name: "no cap", b: Backoff{First: time.Second},
			want: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}},
		{name: "first above the cap", b: Backoff{First: time.Minute, Max: time.Second},
			want: []time.Duration{time.Second, time.Second}},
		{name: "zero", b: Backoff{}, want: []time.Duration{0, 0}},
		{name: "saturates", b: Backoff{First: maxDuration / 3},
			want: []time.Duration{maxDuration / 3, maxDuration / 3 * 2, maxDuration, maxDuration}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			for i, want := range tc.want {
				if got := b.Next(); got != want {
					t.Fatalf("Next #%d = %v, want %v", i+1, got, want)
				}
				if got := tc.b.Nth(uint64(i + 1)); got != want {
					t.Errorf("Nth(%d) = %v, want %v (the %dth Next)", i+1, got, want, i+1)
				}
			}
			b.Reset()
			if got := b.Next(); got != tc.want[0] {
				t.Errorf("Next after Reset = %v, want %v", got, tc.want[0])
			}
			if got := tc.b.Nth(0); got != tc.want[0] {
				t.Errorf("Nth(0) = %v, want %v", got, tc.want[0])
			}
		})
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{name: "whole pause", ctx: context.Background(), d: time.Millisecond},
		{name: "no pause", ctx: context.Background(), d: 0},
		// An ended context returns at once: a Sleep that waited the hour
		// would run into go test's timeout.
		{name: "ended context", ctx: cancelled, d: time.Hour, want: context.Canceled},
		{name: "ended context, no pause", ctx: cancelled, d: 0, want: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Sleep(tc.ctx, tc.d); !errors.Is(err, tc.want) {
				t.Fatalf("Sleep = %v, want %v", err, tc.want)
			}
			b := Backoff{First: tc.d}
			if err := b.Wait(tc.ctx); !errors.Is(err, tc.want) {
				t.Fatalf("Wait = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSleepIsCutByCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, time.Hour) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
}
