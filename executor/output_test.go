package executor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrefixWriterLines(t *testing.T) {
	long := func(n int, c byte) string { return strings.Repeat(string(c), n) }
	tests := []struct {
		name   string
		writes []string
		want   string // host output after the final flush
	}{
		{name: "lines across writes", writes: []string{"ab", "c\nd", "e\n", "\n"}, want: "P abc\nP de\nP \n"},
		{name: "last line without newline", writes: []string{"a\nb"}, want: "P a\nP b\n"},
		{name: "several lines in one write", writes: []string{"a\nb\nc\n"}, want: "P a\nP b\nP c\n"},
		{name: "64 KiB with its newline is one line", writes: []string{long(maxLine-1, 'x') + "\n"},
			want: "P " + long(maxLine-1, 'x') + "\n"},
		{name: "64 KiB without newline is split", writes: []string{long(maxLine, 'x'), "\n"},
			want: "P " + long(maxLine, 'x') + "\nP \n"},
		{name: "long line split in 64 KiB pieces", writes: []string{"ab", long(2*maxLine+10, 'y') + "\nz"},
			want: "P ab" + long(maxLine-2, 'y') + "\nP " + long(maxLine, 'y') + "\nP " + long(12, 'y') + "\nP z\n"},
		{name: "split across small writes", writes: []string{long(maxLine-1, 'x'), "yz\n"},
			want: "P " + long(maxLine-1, 'x') + "y\nP z\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var host, raw bytes.Buffer
			o := &runnerOutput{host: &host, raw: &raw, hostCap: -1}
			p := o.writer("P ")
			for _, w := range tc.writes {
				if n, err := p.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write() = %d, %v", n, err)
				}
			}
			p.flush()
			if host.String() != tc.want {
				t.Errorf("host log = %.200q…, want %.200q…", host.String(), tc.want)
			}
			if all := strings.Join(tc.writes, ""); raw.String() != all {
				t.Errorf("raw output differs from what was written")
			}
			if total, omitted := o.omitted(); total != int64(raw.Len()) || omitted != 0 {
				t.Errorf("omitted() = %d, %d; want %d, 0", total, omitted, raw.Len())
			}
		})
	}
}

func TestHostLogRunnerCap(t *testing.T) {
	lines := func(n int, s string) string { return strings.Repeat(s, n) }
	const notice = "[pikaci] runner output past %d bytes is not repeated in host.log; artifacts/guest.log has all of it\n"
	tests := []struct {
		name     string
		cap      int64
		stdout   string
		stderr   string
		want     []string // in host.log
		wantNot  []string // not in host.log
		wantRows int      // runner lines in host.log
	}{
		{name: "under the cap", cap: 100, stdout: lines(5, "aaaa\n"), stderr: "warning\n", wantRows: 6,
			want: []string{"[runner:stderr] warning\n", "[pikaci] guest runner exited with 0\n"}, wantNot: []string{"not repeated"}},
		{name: "cap hit", cap: 20, stdout: lines(10, "aaaa\n"), stderr: "warning\n", wantRows: 4,
			want: []string{fmt.Sprintf(notice, 20),
				"[pikaci] guest runner exited with 0\n[pikaci] runner output: 58 bytes, 38 not repeated in host.log\n"},
			wantNot: []string{"[runner:stderr] warning"}},
		{name: "exactly the cap", cap: 25, stdout: lines(5, "aaaa\n"), wantRows: 5, wantNot: []string{"not repeated"}},
		{name: "no cap", cap: -1, stdout: lines(2000, "0123456789\n"), wantRows: 2000, wantNot: []string{"not repeated"}},
		{name: "default cap", cap: 0, stdout: lines(3, strings.Repeat("z", 1000)+"\n") + strings.Repeat("y", 3<<20),
			wantRows: 3 + (1<<20-3003)/maxLine,
			want: []string{fmt.Sprintf(notice, 1<<20),
				fmt.Sprintf("[pikaci] runner output: %d bytes, %d not repeated in host.log\n", 3003+3<<20, 3003+3<<20-3003-(1<<20-3003)/maxLine*maxLine)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult,
				guestFiles: map[string]string{}, guestLogErr: true,
				output: func(stdout, stderr io.Writer) {
					io.WriteString(stdout, tc.stdout)
					io.WriteString(stderr, tc.stderr)
				}}
			var log syncBuf
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
			x.Config.HostLogRunnerBytes = tc.cap
			job := newJob(t, &log)
			if _, err := x.Execute(t.Context(), job); err != nil {
				t.Fatal(err)
			}
			hl := log.String()
			for _, w := range tc.want {
				if !strings.Contains(hl, w) {
					t.Errorf("host log lacks %q:\n%.2000s", w, hl)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(hl, w) {
					t.Errorf("host log has %q:\n%.2000s", w, hl)
				}
			}
			if n := strings.Count(hl, "is not repeated in host.log"); n > 1 {
				t.Errorf("the cap is told %d times, want once", n)
			}
			if n := strings.Count(hl, "[runner:"); n != tc.wantRows {
				t.Errorf("host log has %d runner lines, want %d", n, tc.wantRows)
			}
			// The pull of the guest's log failed: the live copy stays whole.
			b, err := os.ReadFile(filepath.Join(job.JobDir, "artifacts", "guest.log"))
			if err != nil || string(b) != tc.stdout+tc.stderr {
				t.Errorf("artifacts/guest.log: %d bytes, %v; want the %d bytes of output", len(b), err, len(tc.stdout+tc.stderr))
			}
		})
	}
}
