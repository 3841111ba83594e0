package termsafe

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"plain ASCII", "hello, world\n", "hello, world\n"},
		{"tab and newline kept", "a\tb\nc", "a\tb\nc"},
		{"backslash kept", `C:\x1b \u001b`, `C:\x1b \u001b`},
		{"UTF-8 kept", "grüße ✓ 日本 \U0001F600", "grüße ✓ 日本 \U0001F600"},
		{"replacement character kept", "\uFFFD", "\uFFFD"},
		{"NUL", "a\x00b", `a\u0000b`},
		{"ESC", "\x1b", `\u001b`},
		{"CR", "a\rb", `a\u000db`},
		{"CRLF", "line\r\n", "line\\u000d\n"},
		{"BEL", "\a", `\u0007`},
		{"BS", "\b", `\u0008`},
		{"VT FF", "\v\f", `\u000b\u000c`},
		{"US", "\x1f", `\u001f`},
		{"DEL", "\x7f", `\u007f`},
		{"SGR colour", "\x1b[31mred\x1b[0m", `\u001b[31mred\u001b[0m`},
		{"the issue's payload", "\x1b]0;x\a\x1b[2J\x1b[1A\rfake", `\u001b]0;x\u0007\u001b[2J\u001b[1A\u000dfake`},
		{"redraw a line", "\x1b[1A\x1b[2Kpassed", `\u001b[1A\u001b[2Kpassed`},
		{"C1 CSI as UTF-8", "\u009b2J", `\u009b2J`},
		{"C1 NEL, OSC, ST", "\u0085\u009d\u009c", `\u0085\u009d\u009c`},
		{"first C1 and first after", "\u0080\u00a0", "\\u0080\u00a0"},
		{"stray C1 byte", "\x9b2J", `\x9b2J`},
		{"stray byte above C1", "\xff\xfe", `\xff\xfe`},
		{"Latin-1 é", "caf\xe9", `caf\xe9`},
		{"overlong ESC", "\xc0\x9b", `\xc0\x9b`},
		{"surrogate half", "\xed\xa0\x80", `\xed\xa0\x80`},
		{"truncated rune at end", "ab\xe2\x9c", `ab\xe2\x9c`},
		{"truncated rune mid", "\xe2\x9cx", `\xe2\x9cx`},
		{"lead byte before C1 rune", "\xc2\xc2\x9b", `\xc2\u009b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(Bytes([]byte(tc.in)))
			if got != tc.want {
				t.Errorf("Bytes(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if s := String(tc.in); s != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.in, s, tc.want)
			}
			checkSafe(t, []byte(got))
			if again := string(Bytes([]byte(got))); again != got {
				t.Errorf("not idempotent: %q becomes %q", got, again)
			}
			// Every split into two writes gives the same output.
			for i := 0; i <= len(tc.in); i++ {
				if w := writeSplit(t, tc.in, i); w != tc.want {
					t.Errorf("split at %d: %q, want %q", i, w, tc.want)
				}
			}
			// And byte by byte.
			if w := writeSplit(t, tc.in, -1); w != tc.want {
				t.Errorf("byte by byte: %q, want %q", w, tc.want)
			}
		})
	}
}

// writeSplit writes in through a Writer in two writes cut at i, or byte by
// byte when i < 0, then flushes.
func writeSplit(t *testing.T, in string, i int) string {
	t.Helper()
	var out bytes.Buffer
	w := NewWriter(&out)
	var parts []string
	if i < 0 {
		for j := range len(in) {
			parts = append(parts, in[j:j+1])
		}
	} else {
		parts = []string{in[:i], in[i:]}
	}
	for _, p := range parts {
		n, err := w.Write([]byte(p))
		if err != nil || n != len(p) {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// checkSafe fails when b holds a byte or character a terminal may act on.
func checkSafe(t *testing.T, b []byte) {
	t.Helper()
	if !utf8.Valid(b) {
		t.Errorf("output %q is not valid UTF-8", b)
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\t' && r != '\n' || r >= 0x7f && r <= 0x9f {
			t.Errorf("output %q holds control character %U", b, r)
		}
	}
}

func TestBytesReturnsSafeInputItself(t *testing.T) {
	in := []byte("nothing to replace ✓\n")
	if out := Bytes(in); &out[0] != &in[0] {
		t.Errorf("Bytes copied a safe input")
	}
}

// TestWriterHoldsAtMostOneIncompleteRune checks the bound: a write ending
// in a rune's first bytes holds those (at most 3) and no more.
func TestWriterHoldsAtMostOneIncompleteRune(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	if _, err := w.Write([]byte("abc\xf0\x9f\x98")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "abc" {
		t.Fatalf("after a write ending in 3 bytes of a 4-byte rune: %q, want %q", out.String(), "abc")
	}
	if _, err := w.Write([]byte("\x80!")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "abc\U0001F600!" {
		t.Fatalf("the rune completed by the next write: %q", out.String())
	}
	if _, err := w.Write([]byte("\xc2")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "abc\U0001F600!\\xc2"; out.String() != want {
		t.Fatalf("after Flush: %q, want %q", out.String(), want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterReportsErrors(t *testing.T) {
	w := NewWriter(failWriter{})
	for _, p := range []string{"plain", "\x1b"} {
		if n, err := w.Write([]byte(p)); err == nil || n != 0 {
			t.Errorf("Write(%q) = %d, %v; want 0 and the error", p, n, err)
		}
	}
}

func TestWriterLargeWrite(t *testing.T) {
	in := strings.Repeat("x\x1b", 1<<20)
	var out bytes.Buffer
	w := NewWriter(&out)
	if _, err := w.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat(`x\u001b`, 1<<20); out.String() != want {
		t.Errorf("large write: %d bytes, want %d", out.Len(), len(want))
	}
	if w.buf != nil {
		t.Errorf("the writer keeps a %d-byte buffer after a large write", cap(w.buf))
	}
}

// FuzzWriter: whatever the input and however it is cut into writes, the
// output is valid UTF-8 with no control character but tab and newline,
// equals Bytes of the whole input, and is left alone by a second pass.
func FuzzWriter(f *testing.F) {
	for _, s := range []string{"", "plain\n", "\x1b]0;x\a\x1b[2J\x1b[1A\rfake", "\u009b\x9b\xc2", "\xf0\x9f\x98\x80", "\xe2\x80\x9b", "\xc2\xc2\x9b"} {
		f.Add([]byte(s), uint8(1), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, a, b uint8) {
		whole := Bytes(append([]byte(nil), in...))
		checkSafe(t, whole)
		if again := Bytes(whole); !bytes.Equal(again, whole) {
			t.Errorf("not idempotent: %q becomes %q", whole, again)
		}
		if safeLen(in) == len(in) && !bytes.Equal(whole, in) {
			t.Errorf("safe input %q changed to %q", in, whole)
		}
		// Cut in writes of sizes a+1 and b+1, alternating.
		var out bytes.Buffer
		w := NewWriter(&out)
		rest := in
		for k := 0; len(rest) > 0; k++ {
			n := int(a) + 1
			if k%2 == 1 {
				n = int(b) + 1
			}
			n = min(n, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), whole) {
			t.Errorf("split writes (%d, %d) of %q: %q, want %q", a+1, b+1, in, out.Bytes(), whole)
		}
	})
}
