// Package backoff is the project's one retry pause: a first pause,
// doubled after each use, at most a cap, and every wait ends with its
// context. It is a leaf: the standard library only.
package backoff

import (
	"context"
	"time"
)

// Backoff hands out doubling pauses: First, 2·First, 4·First, … at most
// Max (0: no cap). The zero value of the unexported state is the start;
// Reset goes back to it. A Backoff is not safe for concurrent use.
type Backoff struct {
	First, Max time.Duration

	next time.Duration
}

// Next returns the pause to take now and doubles the one after.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.capped(b.First)
	}
	d := b.next
	if b.Max <= 0 || d < b.Max {
		b.next = b.capped(double(d))
	}
	return d
}

// Wait pauses Next() or until ctx ends, and then returns ctx's error.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Reset makes the next pause First again (after a success).
func (b *Backoff) Reset() { b.next = 0 }

// Nth is the pause before the nth try again, counted from 1 (n below 1
// is 1): First·2^(n-1), at most Max. It is what the nth call of Next
// returns, without the state.
func (b Backoff) Nth(n uint64) time.Duration {
	d := b.capped(b.First)
	for i := uint64(1); i < n && (b.Max <= 0 || d < b.Max) && d > 0 && d < maxDuration; i++ {
		d = b.capped(double(d))
	}
	return d
}

func (b Backoff) capped(d time.Duration) time.Duration {
	if b.Max > 0 && d > b.Max {
		return b.Max
	}
	return d
}

const maxDuration = time.Duration(1<<63 - 1)

// double is 2·d, saturating instead of overflowing.
func double(d time.Duration) time.Duration {
	if d > maxDuration/2 {
		return maxDuration
	}
	return 2 * d
}

// Sleep pauses d or until ctx ends, whichever comes first: nil when the
// pause was whole, else ctx's error (at once when ctx has already ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
