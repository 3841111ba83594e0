package writers

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// emitted is one line a Lines emitted and the stream bytes it held.
type emitted struct {
	line string
	n    int
}

func TestLines(t *testing.T) {
	long := func(n int, c byte) string { return strings.Repeat(string(c), n) }
	const m = DefaultMaxLine
	tests := []struct {
		name   string
		max    int
		writes []string
		want   []emitted // after the final Flush
	}{
		{name: "lines across writes", writes: []string{"ab", "c\nd", "e\n", "\n"},
			want: []emitted{{"P abc\n", 4}, {"P de\n", 3}, {"P \n", 1}}},
		{name: "last line without newline", writes: []string{"a\nb"},
			want: []emitted{{"P a\n", 2}, {"P b\n", 1}}},
		{name: "several lines in one write", writes: []string{"a\nb\nc\n"},
			want: []emitted{{"P a\n", 2}, {"P b\n", 2}, {"P c\n", 2}}},
		{name: "nothing written", writes: nil, want: nil},
		{name: "the maximum with its newline is one line", max: 4, writes: []string{"abc\n"},
			want: []emitted{{"P abc\n", 4}}},
		{name: "the maximum without newline is split", max: 4, writes: []string{"abcd", "\n"},
			want: []emitted{{"P abcd\n", 4}, {"P \n", 1}}},
		{name: "a long line in pieces of the maximum", max: 4, writes: []string{"ab", "cdefghij\nz"},
			want: []emitted{{"P abcd\n", 4}, {"P efgh\n", 4}, {"P ij\n", 3}, {"P z\n", 1}}},
		{name: "split across small writes", max: 4, writes: []string{"abc", "de\n"},
			want: []emitted{{"P abcd\n", 4}, {"P e\n", 2}}},
		{name: "default maximum: 64 KiB without newline is split", writes: []string{long(m, 'x'), "\n"},
			want: []emitted{{"P " + long(m, 'x') + "\n", m}, {"P \n", 1}}},
		{name: "default maximum: 64 KiB with its newline is one line", writes: []string{long(m-1, 'x') + "\n"},
			want: []emitted{{"P " + long(m-1, 'x') + "\n", m}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []emitted
			l := NewLines("P ", tc.max, func(line []byte, n int) error {
				got = append(got, emitted{string(line), n})
				return nil
			})
			for _, w := range tc.writes {
				if n, err := l.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write(%.20q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("emitted %.300q…, want %.300q…", fmt.Sprint(got), fmt.Sprint(tc.want))
			}
			if err := l.Flush(); err != nil || len(got) != len(tc.want) {
				t.Errorf("a second Flush emitted again (%v)", err)
			}
		})
	}
}

func TestPrefixerWritesLinesToItsWriter(t *testing.T) {
	var out bytes.Buffer
	l := NewPrefixer(&out, "    job | ", 0)
	if l.Prefix() != "    job | " {
		t.Errorf("Prefix() = %q", l.Prefix())
	}
	l.Write([]byte("one\ntw"))
	l.Write([]byte("o\nthree"))
	if want := "    job | one\n    job | two\n"; out.String() != want {
		t.Errorf("before Flush: %q, want %q", out.String(), want)
	}
	l.Flush()
	if want := "    job | one\n    job | two\n    job | three\n"; out.String() != want {
		t.Errorf("after Flush: %q, want %q", out.String(), want)
	}
}

// An emit error stops the write; the count covers the failed line.
func TestLinesEmitError(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		failOn  int // the emit call that fails, from 1
		write   string
		wantN   int
		wantErr error
	}{
		{name: "first line fails", failOn: 1, write: "ab\ncd\n", wantN: 3, wantErr: boom},
		{name: "second line fails", failOn: 2, write: "ab\ncd\nef", wantN: 6, wantErr: boom},
		{name: "none fails", failOn: 9, write: "ab\ncd\n", wantN: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			l := NewLines("", 0, func([]byte, int) error {
				if calls++; calls == tc.failOn {
					return boom
				}
				return nil
			})
			n, err := l.Write([]byte(tc.write))
			if n != tc.wantN || !errors.Is(err, tc.wantErr) {
				t.Errorf("Write() = %d, %v; want %d, %v", n, err, tc.wantN, tc.wantErr)
			}
		})
	}
}

// A 50 MB line without a newline never makes the buffer grow.
func TestLinesBoundedMemory(t *testing.T) {
	const prefix = "[runner:stdout] "
	var lines, longest int
	l := NewLines(prefix, 0, func(line []byte, _ int) error {
		lines++
		longest = max(longest, len(line))
		return nil
	})
	capBefore := cap(l.line)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	const size = 50 << 20
	for range size / len(chunk) {
		if _, err := l.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if held := len(l.line) - l.start; held > DefaultMaxLine || cap(l.line) != capBefore {
			t.Fatalf("buffer holds %d bytes with capacity %d, want at most %d and capacity %d", held, cap(l.line), DefaultMaxLine, capBefore)
		}
	}
	l.Flush()
	if want := size / DefaultMaxLine; lines != want || longest != len(prefix)+DefaultMaxLine+1 {
		t.Errorf("got %d lines, the longest %d bytes; want %d lines of %d", lines, longest, want, len(prefix)+DefaultMaxLine+1)
	}
}
