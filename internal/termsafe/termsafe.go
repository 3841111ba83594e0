// Package termsafe makes text safe to print on a terminal: control
// characters other than tab and newline are replaced by visible escapes,
// so that a job's output cannot move the cursor, rewrite lines already
// printed, set the window title or send any other terminal command
// (docs/SECURITY.md, "Terminal output").
//
// The replacements:
//
//   - a control character U+00XX (C0 except tab and newline, DEL, C1
//     U+0080–U+009F encoded as UTF-8) becomes the six characters \u00XX,
//     lowercase hex: ESC is \u001b, CR \u000d, CSI \u009b. It is the JSON
//     escape, so JSON output stays valid JSON with the same meaning;
//   - a byte that is not part of valid UTF-8 becomes the four characters
//     \xNN (a stray 0x9b, which an 8-bit terminal reads as CSI, is \x9b).
//
// Everything else, backslashes included, passes unchanged: the output is
// valid UTF-8 with no control character but tab and newline. A job can
// print the text \u001b itself; it looks like an escaped ESC, and is just
// as harmless. SGR colours are replaced like every other sequence.
package termsafe

import (
	"io"
	"sync"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// plain reports whether the ASCII byte c passes unchanged.
func plain(c byte) bool { return c >= 0x20 && c != 0x7f || c == '\t' || c == '\n' }

// appendSafe appends the safe form of src to dst. Unless final, it stops
// before a trailing incomplete UTF-8 sequence (at most 3 bytes) that the
// next bytes may complete, and returns how many bytes it left.
func appendSafe(dst, src []byte, final bool) ([]byte, int) {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			if plain(c) {
				dst = append(dst, c)
			} else {
				dst = appendControl(dst, rune(c))
			}
			i++
			continue
		}
		if !final && !utf8.FullRune(src[i:]) {
			return dst, len(src) - i
		}
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		case r <= 0x9f: // C1
			dst = appendControl(dst, r)
		default:
			dst = append(dst, src[i:i+size]...)
		}
		i += size
	}
	return dst, 0
}

func appendControl(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', '0', '0', hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// safeLen returns the length of the longest prefix of b that passes
// unchanged, stopping at an incomplete sequence at its end.
func safeLen(b []byte) int {
	i := 0
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			if !plain(c) {
				return i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || r <= 0x9f {
			return i
		}
		i += size
	}
	return i
}

// Bytes returns b made safe; b itself when it is safe already. An
// incomplete UTF-8 sequence at its end is escaped byte by byte.
func Bytes(b []byte) []byte {
	n := safeLen(b)
	if n == len(b) {
		return b
	}
	out, _ := appendSafe(append(make([]byte, 0, len(b)+16), b[:n]...), b[n:], true)
	return out
}

// String is Bytes for a string.
func String(s string) string {
	if safeLen([]byte(s)) == len(s) {
		return s
	}
	return string(Bytes([]byte(s)))
}

// Stream makes a stream safe, write by write: a UTF-8 sequence cut
// between two writes is decoded whole (a C1 character split in two is
// escaped, a valid character kept). It holds at most 3 bytes. Not safe
// for concurrent use; Writer is.
type Stream struct {
	held [utf8.UTFMax]byte
	n    int
}

// Append appends the safe form of p to dst, holding back a trailing
// incomplete sequence until the next Append or Flush.
func (s *Stream) Append(dst, p []byte) []byte {
	// First the held sequence, completed by at most 3 bytes of p: p is
	// never copied whole.
	for s.n > 0 {
		var tmp [2 * utf8.UTFMax]byte
		k := min(len(p), utf8.UTFMax-1)
		buf := append(append(tmp[:0], s.held[:s.n]...), p[:k]...)
		if !utf8.FullRune(buf) { // p is used up (4 bytes are always full)
			s.n = copy(s.held[:], buf)
			return dst
		}
		_, size := utf8.DecodeRune(buf)
		dst, _ = appendSafe(dst, buf[:size], true)
		if size >= s.n {
			p = p[size-s.n:]
			s.n = 0
		} else { // an invalid byte: the held ones after it go first
			s.n = copy(s.held[:], s.held[size:s.n])
		}
	}
	var left int
	dst, left = appendSafe(dst, p, false)
	s.n = copy(s.held[:], p[len(p)-left:])
	return dst
}

// Flush appends the held bytes, escaped: the stream ended, nothing
// completes them.
func (s *Stream) Flush(dst []byte) []byte {
	dst, _ = appendSafe(dst, s.held[:s.n], true)
	s.n = 0
	return dst
}

// Writer writes a stream made safe to w; Flush writes the held bytes.
// Safe for concurrent use (writes are made safe and written one at a time).
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	s   Stream
	buf []byte
}

// NewWriter returns a Writer in front of w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// maxKept bounds the buffer a Writer keeps between writes.
const maxKept = 64 << 10

// Write makes p safe and writes it, but for a trailing incomplete UTF-8
// sequence. It reports len(p) written unless w fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.s.n == 0 {
		if n := safeLen(p); n == len(p) {
			if _, err := w.w.Write(p); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	out := w.s.Append(w.buf[:0], p)
	if cap(out) <= maxKept {
		w.buf = out
	} else {
		w.buf = nil
	}
	if len(out) > 0 {
		if _, err := w.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes the held bytes, escaped.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.s.n == 0 {
		return nil
	}
	out := w.s.Flush(nil)
	_, err := w.w.Write(out)
	return err
}
