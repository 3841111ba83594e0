package syncwriter

import (
	"bytes"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// slowWriter writes byte by byte, yielding between bytes, and counts the
// writes that found another one under way: unserialised writes would
// overlap and interleave (and -race would see the shared buffer).
type slowWriter struct {
	b        bytes.Buffer
	inside   atomic.Int32
	overlaps atomic.Int32
}

func (s *slowWriter) Write(p []byte) (int, error) {
	if s.inside.Add(1) > 1 {
		s.overlaps.Add(1)
	}
	defer s.inside.Add(-1)
	for _, c := range p {
		s.b.WriteByte(c)
		runtime.Gosched()
	}
	return len(p), nil
}

func TestWritesStayWhole(t *testing.T) {
	for _, tc := range []struct {
		name      string
		writers   int
		perWriter int
	}{
		{"one writer", 1, 50},
		{"two writers", 2, 200},
		{"many writers", 16, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out slowWriter
			w := New(&out)
			var wg sync.WaitGroup
			for i := range tc.writers {
				line := strings.Repeat(string(rune('a'+i)), 64) + "\n"
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range tc.perWriter {
						if _, err := w.Write([]byte(line)); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			if n := out.overlaps.Load(); n > 0 {
				t.Fatalf("%d writes ran while another was under way", n)
			}
			lines := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
			if len(lines) != tc.writers*tc.perWriter {
				t.Fatalf("%d lines, want %d", len(lines), tc.writers*tc.perWriter)
			}
			for _, l := range lines {
				if len(l) != 64 || strings.Count(l, l[:1]) != 64 {
					t.Fatalf("a write was cut or mixed: %q", l)
				}
			}
		})
	}
}
