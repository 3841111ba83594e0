package daemon

import "time"

// A worker is taken for dead only after a silence watched first-hand: its
// claim older than the stale window, then seen unchanged for
// TakeoverAfter by whoever judges it (a delivery that would take the job
// over, the reaper that would delete its instance). A claim's age alone
// proves nothing after an outage of the claims bucket or of the holder's
// NATS connection, when every claim looks old (docs/RELIABILITY.md,
// "Claims across an outage").

// silence is how long one revision of a claim has been watched staying
// current, by the watcher's own clock.
type silence struct {
	rev   uint64
	since time.Time
}

// watch returns how long rev has been watched; first when the watch
// starts now (a new revision restarts it).
func (s *silence) watch(rev uint64) (watched time.Duration, first bool) {
	now := time.Now()
	if s.since.IsZero() || s.rev != rev {
		s.rev, s.since = rev, now
		return 0, true
	}
	return now.Sub(s.since), false
}

// silences is a watch per job key, for a watcher that judges many claims
// in passes (the reaper): keys not judged in a pass are forgotten.
type silences struct {
	byKey map[string]*silence
	seen  map[string]bool // judged in the current pass
}

// begin starts a pass.
func (w *silences) begin() { w.seen = map[string]bool{} }

// watch is silence.watch for key's claim.
func (w *silences) watch(key string, rev uint64) time.Duration {
	if w.byKey == nil {
		w.byKey = map[string]*silence{}
	}
	if w.seen != nil {
		w.seen[key] = true
	}
	s := w.byKey[key]
	if s == nil {
		s = &silence{}
		w.byKey[key] = s
	}
	d, _ := s.watch(rev)
	return d
}

// end forgets the keys the pass did not judge.
func (w *silences) end() {
	for k := range w.byKey {
		if !w.seen[k] {
			delete(w.byKey, k)
		}
	}
	w.seen = nil
}
