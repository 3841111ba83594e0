package run

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A shared prepare node's output is in every consuming job's host.log
// (docs/CONTRACTS.md) and in the live view once, under the first job.
func TestSharedPrepareOutputIsShownLiveOnce(t *testing.T) {
	tests := []struct {
		name string
		jobs int
	}{
		{"one consumer", 1},
		{"six consumers, as pika's staged lanes", 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var jobs []*jobState
			var lives []*bytes.Buffer
			for i := range tc.jobs {
				f, err := os.Create(filepath.Join(dir, "host"+string(rune('a'+i))+".log"))
				if err != nil {
					t.Fatal(err)
				}
				live := &bytes.Buffer{}
				lives = append(lives, live)
				jobs = append(jobs, &jobState{hostLog: &lockedFile{f: f, tee: live}})
			}
			sharedLine(jobs, "prepare %s: nix build %s", "out", ".#x")
			for _, w := range sharedLogs(jobs) {
				if _, err := w.Write([]byte("building '/nix/store/x.drv'...\n")); err != nil {
					t.Fatal(err)
				}
			}
			for i, js := range jobs {
				if err := js.hostLog.Close(); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(js.hostLog.f.Name())
				if err != nil {
					t.Fatal(err)
				}
				want := "[pikaci] prepare out: nix build .#x\nbuilding '/nix/store/x.drv'...\n"
				if string(b) != want {
					t.Errorf("job %d host.log = %q, want %q", i, b, want)
				}
				live := lives[i].String()
				if i == 0 && live != want {
					t.Errorf("first job's live copy = %q, want %q", live, want)
				}
				if i > 0 && strings.Contains(live, "nix") {
					t.Errorf("job %d's live copy repeats the shared output: %q", i, live)
				}
			}
		})
	}
}
