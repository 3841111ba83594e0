package writers

import (
	"bytes"
	"io"
)

// DefaultMaxLine is the longest line a Lines holds unless told otherwise,
// newline included.
const DefaultMaxLine = 64 << 10

// Emit is handed each line a Lines cuts: the prefix, then n bytes of the
// stream, then a newline (added when those n bytes do not end in one).
// line is valid only during the call.
type Emit func(line []byte, n int) error

// Lines cuts a stream into lines and emits each with a prefix. A line
// without a newline is held until it ends, up to its maximum length
// (newline included): then that much is emitted as a line of its own and
// the rest follows as the next one, so a stream that never ends a line
// costs no more than one maximum line of memory. A Lines is not safe for
// concurrent use: its caller serialises Write and Flush.
type Lines struct {
	emit  Emit
	max   int    // the longest line held, newline included
	start int    // the prefix's length
	line  []byte // the prefix, then the current line (at most max bytes)
}

// NewLines returns a Lines that hands each line to emit; max <= 0 means
// DefaultMaxLine.
func NewLines(prefix string, max int, emit Emit) *Lines {
	if max <= 0 {
		max = DefaultMaxLine
	}
	line := make([]byte, 0, len(prefix)+max+1)
	return &Lines{emit: emit, max: max, start: len(prefix), line: append(line, prefix...)}
}

// NewPrefixer returns a Lines that writes each line to w; max <= 0 means
// DefaultMaxLine.
func NewPrefixer(w io.Writer, prefix string, max int) *Lines {
	return NewLines(prefix, max, func(line []byte, _ int) error {
		_, err := w.Write(line)
		return err
	})
}

// Prefix returns the prefix of every line.
func (l *Lines) Prefix() string { return string(l.line[:l.start]) }

// Write takes b, emitting every line it completes. On an emit error it
// returns the bytes of b taken so far, the failed line's included.
func (l *Lines) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		chunk := b[:min(len(b), l.max-(len(l.line)-l.start))]
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			chunk = chunk[:i+1]
		}
		l.line = append(l.line, chunk...)
		b = b[len(chunk):]
		if chunk[len(chunk)-1] == '\n' || len(l.line)-l.start == l.max {
			if err := l.emitLine(); err != nil {
				return n - len(b), err
			}
		}
	}
	return n, nil
}

// Flush emits a last line that has no newline, if there is one.
func (l *Lines) Flush() error {
	if len(l.line) > l.start {
		return l.emitLine()
	}
	return nil
}

// emitLine emits the held line, ending it with a newline if it has none,
// and starts the next one.
func (l *Lines) emitLine() error {
	n := len(l.line) - l.start
	if l.line[len(l.line)-1] != '\n' {
		l.line = append(l.line, '\n')
	}
	err := l.emit(l.line, n)
	l.line = l.line[:l.start]
	return err
}
