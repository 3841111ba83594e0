// Package mask hides secret values in output: whole buffers (records,
// messages, small files) and streams whose writes may split a value.
package mask

import (
	"bytes"
	"io"
	"sort"
	"sync"
)

// Placeholder replaces every occurrence of a secret value.
const Placeholder = "[MASKED]"

// Secrets is a set of values to mask. The zero value and nil mask nothing.
type Secrets struct {
	vals [][]byte // non-empty, longest first
}

// New returns the secrets among values; empty values are dropped (they
// would mask nothing, or everything).
func New(values ...string) *Secrets {
	s := &Secrets{}
	seen := map[string]bool{}
	for _, v := range values {
		if v == "" || seen[v] {
			continue
		}
		seen[v] = true
		s.vals = append(s.vals, []byte(v))
	}
	sort.SliceStable(s.vals, func(i, j int) bool { return len(s.vals[i]) > len(s.vals[j]) })
	return s
}

// Empty reports whether s masks nothing.
func (s *Secrets) Empty() bool { return s == nil || len(s.vals) == 0 }

// Bytes returns b with every secret replaced by Placeholder; b itself when
// there is nothing to mask.
func (s *Secrets) Bytes(b []byte) []byte {
	if s.Empty() {
		return b
	}
	for _, v := range s.vals {
		if bytes.Contains(b, v) {
			b = bytes.ReplaceAll(b, v, []byte(Placeholder))
		}
	}
	return b
}

// String is Bytes for a string.
func (s *Secrets) String(str string) string {
	if s.Empty() {
		return str
	}
	return string(s.Bytes([]byte(str)))
}

// held is how many trailing bytes of b could start a secret that the
// next write completes: the longest suffix of b that is a proper prefix of
// a secret.
func (s *Secrets) held(b []byte) int {
	n := 0
	for _, v := range s.vals {
		for k := min(len(v)-1, len(b)); k > n; k-- {
			if bytes.HasSuffix(b, v[:k]) {
				n = k
				break
			}
		}
	}
	return n
}

// Writer masks a stream: a value split across writes is masked too. It
// holds back only the trailing bytes that could begin a secret, until the
// next write or Flush. Safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	s   *Secrets
	w   io.Writer
	buf []byte // held bytes, then the current write
}

// Writer returns a masking writer in front of w; with no secrets, w.
func (s *Secrets) Writer(w io.Writer) io.Writer {
	if s.Empty() {
		return w
	}
	return &Writer{s: s, w: w}
}

// Write masks what it can and writes all but a possible secret's start.
// It reports len(p) written unless w fails.
func (m *Writer) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data := p // not copied when nothing is held: Bytes copies only to replace
	if len(m.buf) > 0 {
		data = append(m.buf, p...)
	}
	data = m.s.Bytes(data)
	keep := m.s.held(data)
	out := data[:len(data)-keep]
	if len(out) > 0 {
		if _, err := m.w.Write(out); err != nil {
			return 0, err
		}
	}
	// The held bytes get a buffer of their own size: a large write is not
	// pinned, and p (the caller's) is never kept.
	m.buf = append([]byte(nil), data[len(out):]...)
	return len(p), nil
}

// Flush writes the held bytes: the stream ended, they start no secret.
func (m *Writer) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.buf) == 0 {
		return nil
	}
	b := m.buf
	m.buf = nil
	_, err := m.w.Write(b)
	return err
}

// Flush flushes w when it is a masking Writer.
func Flush(w io.Writer) error {
	if m, ok := w.(*Writer); ok {
		return m.Flush()
	}
	return nil
}
