package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// stopProgress is serve's closers.watch: a step of the stop that lasts
// longer than first is named on w ("stopping: waiting for the warm pool
// (deleting its idle instances)"), and again every every while it lasts,
// so a slow stop is never silent. Quick steps say nothing.
func stopProgress(w io.Writer, first, every time.Duration) func(name string) func() {
	var mu sync.Mutex // steps run one at a time, but a late tick may overlap the next
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "jerichoci serve: stopping: "+format+"\n", a...)
	}
	return func(name string) func() {
		start := time.Now()
		done := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			timer := time.NewTimer(first)
			defer timer.Stop()
			select {
			case <-done:
				return
			case <-timer.C:
			}
			say("waiting for %s", name)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-done:
					say("%s done after %s", name, time.Since(start).Round(100*time.Millisecond))
					return
				case <-tick.C:
					say("still waiting for %s (%s)", name, time.Since(start).Round(time.Second))
				}
			}
		}()
		return func() { close(done); <-finished }
	}
}

// drainProgress, once ctx ends (the first signal), names every every how
// many jobs the stop still waits for, until stopped is closed (run
// returned). busy counts the running jobs.
func drainProgress(ctx context.Context, w io.Writer, busy func() int, every time.Duration, stopped <-chan struct{}) {
	select {
	case <-stopped:
		return
	case <-ctx.Done():
	}
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stopped:
			return
		case <-tick.C:
			if n := busy(); n > 0 {
				fmt.Fprintf(w, "jerichoci serve: stopping: still waiting for %d running job(s) to finish (%s; signal again to cancel them)\n", n, time.Since(start).Round(time.Second))
			}
		}
	}
}
