package writers

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// overlapDetector fails a Write that starts while another one runs, and
// keeps what it was given in a buffer that is not safe for concurrent use
// (so -race sees an unserialised writer too).
type overlapDetector struct {
	busy     atomic.Int32
	overlaps atomic.Int32
	buf      bytes.Buffer
}

func (d *overlapDetector) Write(p []byte) (int, error) {
	if d.busy.Add(1) != 1 {
		d.overlaps.Add(1)
	}
	defer d.busy.Add(-1)
	for _, b := range p { // byte by byte, yielding: a second writer gets in if it can
		d.buf.WriteByte(b)
		runtime.Gosched()
	}
	return len(p), nil
}

func TestLockedSerialisesWrites(t *testing.T) {
	tests := []struct {
		name               string
		goroutines, writes int
	}{
		{name: "two goroutines", goroutines: 2, writes: 200},
		{name: "eight goroutines", goroutines: 8, writes: 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d overlapDetector
			var w io.Writer = NewLocked(&d)
			var wg sync.WaitGroup
			var want []string
			for g := range tc.goroutines {
				for i := range tc.writes {
					want = append(want, fmt.Sprintf("g%d-%d", g, i))
				}
				wg.Go(func() {
					for i := range tc.writes {
						fmt.Fprintf(w, "g%d-%d\n", g, i)
					}
				})
			}
			wg.Wait()
			if n := d.overlaps.Load(); n > 0 {
				t.Errorf("%d writes overlapped another", n)
			}
			got := strings.Split(strings.TrimSuffix(d.buf.String(), "\n"), "\n")
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("lines written: %d, want %d whole lines", len(got), len(want))
			}
		})
	}
}
