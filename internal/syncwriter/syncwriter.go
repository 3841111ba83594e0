// Package syncwriter serialises the writes of several goroutines to one
// io.Writer: a command's stdout and stderr copied by os/exec, or a client's
// event lines and live output. Each Write reaches the writer whole, never
// interleaved with another. It is a leaf: the standard library only.
package syncwriter

import (
	"io"
	"sync"
)

// Writer passes each Write on to its writer, one at a time.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a Writer that writes to w.
func New(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes p to the writer while no other Write of this Writer runs.
func (l *Writer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
