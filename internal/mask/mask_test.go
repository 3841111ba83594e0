package mask

import (
	"bytes"
	"strings"
	"testing"
)

func TestBytes(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"none", nil, "token=abc", "token=abc"},
		{"empty value masks nothing", []string{""}, "token=abc", "token=abc"},
		{"one", []string{"s3cret"}, "a s3cret b s3cret", "a [MASKED] b [MASKED]"},
		{"longest first", []string{"ab", "abcd"}, "abcd ab", "[MASKED] [MASKED]"},
		{"multi-line value", []string{"l1\nl2"}, "x l1\nl2 y", "x [MASKED] y"},
		{"absent", []string{"s3cret"}, "s3cre t", "s3cre t"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := New(tc.secrets...).String(tc.in); got != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// Every way of cutting the stream into two or three writes gives the same
// masked output, and the secret never reaches the writer.
func TestWriterSplitValues(t *testing.T) {
	secrets := New("hunter2-value", "zzz")
	in := "start hunter2-value mid hunter2-valu zz hunter2-value zzz end hunter2-"
	want := secrets.String(in)
	if strings.Contains(want, "hunter2-value") {
		t.Fatalf("whole-buffer masking left the secret: %q", want)
	}
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j++ {
			var out bytes.Buffer
			w := secrets.Writer(&out)
			for _, part := range []string{in[:i], in[i:j], in[j:]} {
				n, err := w.Write([]byte(part))
				if err != nil || n != len(part) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := Flush(w); err != nil {
				t.Fatal(err)
			}
			if out.String() != want {
				t.Fatalf("split at %d,%d: got %q, want %q", i, j, out.String(), want)
			}
		}
	}
}

// Bytes that cannot start a secret are written at once (live logs are not
// delayed); only a possible start is held.
func TestWriterHoldsOnlyPossibleStarts(t *testing.T) {
	var out bytes.Buffer
	w := New("secret").Writer(&out)
	w.Write([]byte("line one\n"))
	if out.String() != "line one\n" {
		t.Fatalf("after a plain line: %q", out.String())
	}
	w.Write([]byte("x sec"))
	if out.String() != "line one\nx " {
		t.Fatalf("after a possible start: %q", out.String())
	}
	w.Write([]byte("ond\n"))
	if out.String() != "line one\nx second\n" {
		t.Fatalf("after it turned out not to be one: %q", out.String())
	}
}

func TestNoSecretsIsPassThrough(t *testing.T) {
	var out bytes.Buffer
	if w := New().Writer(&out); w != &out {
		t.Errorf("Writer with no secrets wraps the writer")
	}
	var nilSecrets *Secrets
	if got := nilSecrets.String("x"); got != "x" {
		t.Errorf("nil secrets: %q", got)
	}
}

func BenchmarkWriter(b *testing.B) {
	chunk := bytes.Repeat([]byte("0123456789abcdef\n"), 2048)
	for _, bc := range []struct {
		name string
		s    *Secrets
	}{{"baseline-no-secrets", New()}, {"two-secrets", New("hunter2-value", "another-secret-value")}} {
		b.Run(bc.name, func(b *testing.B) {
			w := bc.s.Writer(discard{})
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				w.Write(chunk)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
