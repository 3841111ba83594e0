package executor

import (
	"bytes"
	"io"
	"testing"
)

// The job's output limit: guest.log keeps exactly the first limit bytes,
// the rest is dropped (the writer still reports it written, so the
// runner's stream is not broken mid-stop), and over closes once the
// limit is passed, never before.
func TestRunnerOutputLimit(t *testing.T) {
	tests := []struct {
		name     string
		limit    int64
		writes   []string
		wantRaw  string
		wantOver bool
	}{
		{"no limit", 0, []string{"aaaa", "bbbb"}, "aaaabbbb", false},
		{"under the limit", 10, []string{"aaaa", "bbbb"}, "aaaabbbb", false},
		{"exactly the limit", 8, []string{"aaaa", "bbbb"}, "aaaabbbb", false},
		{"one write crosses it", 6, []string{"aaaa", "bbbb"}, "aaaabb", true},
		{"later writes dropped", 4, []string{"aaaa", "b", "cccc"}, "aaaa", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var raw bytes.Buffer
			o := newRunnerOutput(io.Discard, &raw, -1, tc.limit)
			w := o.writer("[runner:stdout] ")
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
				}
			}
			if raw.String() != tc.wantRaw || o.exceeded() != tc.wantOver {
				t.Errorf("guest.log %q, over %v; want %q, %v", raw.String(), o.exceeded(), tc.wantRaw, tc.wantOver)
			}
		})
	}
}
