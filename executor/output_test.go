package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/model"
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

// lineCounter counts the lines written to it and their longest.
type lineCounter struct {
	lines   int
	longest int
}

func (c *lineCounter) Write(b []byte) (int, error) {
	c.lines++
	c.longest = max(c.longest, len(b))
	return len(b), nil
}

// A 50 MB line without a newline never makes the buffer grow.
func TestPrefixWriterBoundedMemory(t *testing.T) {
	var host lineCounter
	o := &runnerOutput{host: &host, raw: io.Discard, hostCap: -1}
	p := o.writer("[runner:stdout] ")
	capBefore := cap(p.line)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	const size = 50 << 20
	for range size / len(chunk) {
		if _, err := p.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if held := len(p.line) - p.start; held > maxLine || cap(p.line) != capBefore {
			t.Fatalf("buffer holds %d bytes with capacity %d, want at most %d and capacity %d", held, cap(p.line), maxLine, capBefore)
		}
	}
	p.flush()
	if want := size / maxLine; host.lines != want || host.longest != len("[runner:stdout] ")+maxLine+1 {
		t.Errorf("host log got %d lines, the longest %d bytes; want %d lines of %d", host.lines, host.longest, want, len("[runner:stdout] ")+maxLine+1)
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

func TestCollect(t *testing.T) {
	big := strings.Repeat("e", smallArtifactLimit+1)
	tests := []struct {
		name        string
		be          fakeBackend
		wantErr     string
		wantGuest   string // artifacts/guest.log
		wantFiles   map[string]string
		wantMissing []string // artifacts not written
		wantHost    []string
	}{
		{name: "all artifacts",
			be: fakeBackend{guestFiles: map[string]string{GuestDir + "/logs/guest.log": "the guest's log\n",
				GuestDir + "/events.jsonl": "{}\n", GuestDir + "/status.json": `{"state":"completed"}`}},
			wantGuest: "the guest's log\n",
			wantFiles: map[string]string{"events.jsonl": "{}\n", "status.json": `{"state":"completed"}`, "result.json": passedResult}},
		{name: "guest log pull fails half-way",
			be:        fakeBackend{guestLogErr: true, guestFiles: map[string]string{GuestDir + "/logs/guest.log": "partial log from the guest\n"}},
			wantGuest: "line one\nline twowarning\n",
			wantHost:  []string{"[pikaci] could not collect /run/pika-cloud/logs/guest.log: connection reset by peer"}},
		{name: "events too large",
			be:          fakeBackend{guestFiles: map[string]string{GuestDir + "/events.jsonl": big}},
			wantGuest:   "guest log\n",
			wantMissing: []string{"events.jsonl"},
			wantHost:    []string{"[pikaci] could not collect /run/pika-cloud/events.jsonl: pull /run/pika-cloud/events.jsonl: file is larger than the limit of 1048576 bytes"}},
		{name: "result too large",
			be:      fakeBackend{guestFiles: map[string]string{GuestDir + "/result.json": big}},
			wantErr: "read Incus guest path `/run/pika-cloud/result.json` from localhost failed with pull /run/pika-cloud/result.json: file is larger than the limit of 1048576 bytes"},
	}
	for i := range tests {
		tc := &tests[i]
		t.Run(tc.name, func(t *testing.T) {
			be := &tc.be
			be.images, be.result = map[string]string{"pikaci/dev": "fp1"}, passedResult
			var log syncBuf
			job := newJob(t, &log)
			_, err := (&RemoteLinuxVM{Backend: be, Config: DefaultConfig()}).Execute(t.Context(), job)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			artifacts := filepath.Join(job.JobDir, "artifacts")
			if tc.wantGuest != "" {
				if b, err := os.ReadFile(filepath.Join(artifacts, "guest.log")); err != nil || string(b) != tc.wantGuest {
					t.Errorf("guest.log = %q, %v; want %q", b, err, tc.wantGuest)
				}
			}
			// atomicfile writes guest.log under a hidden temporary name.
			if left, _ := filepath.Glob(filepath.Join(artifacts, ".guest.log.tmp-*")); len(left) > 0 {
				t.Errorf("guest.log's temporary file left behind: %q", left)
			}
			for name, want := range tc.wantFiles {
				if b, err := os.ReadFile(filepath.Join(artifacts, name)); err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", name, b, err, want)
				}
			}
			for _, name := range tc.wantMissing {
				if _, err := os.Stat(filepath.Join(artifacts, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was written: %v", name, err)
				}
			}
			for _, w := range tc.wantHost {
				if !strings.Contains(log.String(), w) {
					t.Errorf("host log lacks %q:\n%s", w, log.String())
				}
			}
			want := map[string]int64{GuestDir + "/logs/guest.log": 0, GuestDir + "/events.jsonl": smallArtifactLimit,
				GuestDir + "/status.json": smallArtifactLimit, GuestDir + "/result.json": smallArtifactLimit}
			for path, limit := range be.pullLimits {
				if want[path] != limit {
					t.Errorf("pulled %s with limit %d, want %d", path, limit, want[path])
				}
			}
		})
	}
}

func TestRootDiskAndGuestAPI(t *testing.T) {
	tests := []struct {
		name      string
		size      string
		root      RootDisk
		rootErr   error
		wantErr   string
		wantHost  string // a host.log line, or "" for no storage line
		wantCalls int
	}{
		{name: "btrfs enforces the size", size: "20GiB", root: RootDisk{Device: "root", Pool: "fast", Driver: "btrfs"}, wantCalls: 1},
		{name: "dir does not", size: "8GiB", root: RootDisk{Device: "rootfs", Pool: "default", Driver: "dir"}, wantCalls: 1,
			wantHost: "[pikaci] storage pool default (dir) cannot enforce the guest disk size 8GiB\n"},
		{name: "no size, no override", size: "", wantCalls: 0},
		{name: "lookup fails", size: "20GiB", rootErr: fmt.Errorf("profile %q: %w", "pika-agent-dev", ErrNotFound), wantCalls: 1,
			wantErr: "look up the root disk of profiles [\"default\" \"pika-agent-dev\"] in project `pika-managed-agents`: profile \"pika-agent-dev\": not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult, root: tc.root, rootErr: tc.rootErr}
			var log syncBuf
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
			x.Config.RootDiskSize = tc.size
			_, err := x.Execute(t.Context(), newJob(t, &log))
			if be.rootCalls != tc.wantCalls {
				t.Errorf("RootDisk called %d times, want %d", be.rootCalls, tc.wantCalls)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrNotFound) {
					t.Fatalf("error = %v, want %q wrapping ErrNotFound", err, tc.wantErr)
				}
				if len(be.created) != 0 || len(be.deleted) != 0 {
					t.Errorf("created %d and deleted %v after a failed lookup", len(be.created), be.deleted)
				}
				if exe := ExecutionOf(err); exe == nil || len(exe.Phases) != 3 || exe.Phases[2].Phase != model.PhasePrepareRuntime {
					t.Errorf("execution = %+v, want it to end in prepare_runtime", exe)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			spec := be.created[0]
			if spec.RootDiskSize != tc.size || spec.RootDisk != tc.root || spec.Config["security.guestapi"] != "false" {
				t.Errorf("spec root disk %+v size %q, guest API %q; want %+v, %q, false", spec.RootDisk, spec.RootDiskSize,
					spec.Config["security.guestapi"], tc.root, tc.size)
			}
			hl := log.String()
			if tc.wantHost != "" && !strings.Contains(hl, tc.wantHost) {
				t.Errorf("host log lacks %q:\n%s", tc.wantHost, hl)
			}
			if tc.wantHost == "" && strings.Contains(hl, "cannot enforce") {
				t.Errorf("host log has a storage line:\n%s", hl)
			}
		})
	}
}

// The size grammar is units.ParseSize's (its table test); this checks
// what the root disk adds: empty is allowed, zero is not, errors name it.
func TestConfigValidateRootDiskSize(t *testing.T) {
	tests := []struct {
		size    string
		wantErr string
	}{
		{size: "20GiB"}, {size: "10GB"}, {size: "1073741824"}, {size: ""},
		{size: "20 GiB", wantErr: `root disk size: "20 GiB" is not a size`},
		{size: "0", wantErr: `root disk size: size "0" is not positive`},
		{size: "0GiB", wantErr: `root disk size: size "0GiB" is not positive`},
		{size: "9000000000EiB", wantErr: `root disk size: size "9000000000EiB" is too large`},
	}
	for _, tc := range tests {
		t.Run(tc.size, func(t *testing.T) {
			c := DefaultConfig()
			c.RootDiskSize = tc.size
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
