package writers

import (
	"io"
	"sync"
)

// Locked serialises the writes of several goroutines to one writer, so
// that each Write reaches it whole, never interleaved with another.
type Locked struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLocked returns a Locked writing to w.
func NewLocked(w io.Writer) *Locked { return &Locked{w: w} }

// Write writes p to the underlying writer while no other Write runs.
func (l *Locked) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
