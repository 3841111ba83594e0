package executor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"jerichoci/internal/mask"
)

// stateDirJob is a job whose state directory a test fills as a guest would.
func stateDirJob(t *testing.T) (*jobRun, string, string, *bytes.Buffer) {
	t.Helper()
	state, artifacts := filepath.Join(t.TempDir(), "state"), t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	var host bytes.Buffer
	j := &jobRun{x: &RemoteLinuxVM{Config: Config{Host: "local"}}, stateDir: state,
		job: Job{Mask: mask.New("s3cret"), HostLog: &host}}
	return j, state, artifacts, &host
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCollectMounted(t *testing.T) {
	j, state, artifacts, host := stateDirJob(t)
	write(t, filepath.Join(state, "logs", "guest.log"), "hello s3cret\n")
	write(t, filepath.Join(state, "events.jsonl"), `{"seq":1}`+"\n")
	write(t, filepath.Join(state, "status.json"), `{"state":"completed"}`)
	write(t, filepath.Join(state, "result.json"), `{"schema_version":1,"status":"completed","exit_code":0,"finished_at":"2026-03-19T01:09:40+00:00","message":"ok s3cret"}`)
	res, err := j.collectMounted(artifacts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Message, "ok ") || strings.Contains(res.Message, "s3cret") {
		t.Errorf("message %q: want it masked", res.Message)
	}
	for name, want := range map[string]string{"guest.log": "hello", "events.jsonl": `"seq":1`, "status.json": "completed", "result.json": "exit_code"} {
		b, err := os.ReadFile(filepath.Join(artifacts, name))
		if err != nil || !strings.Contains(string(b), want) || strings.Contains(string(b), "s3cret") {
			t.Errorf("artifact %s = %q, %v; want it holding %q, masked", name, b, err, want)
		}
	}
	if host.Len() != 0 {
		t.Errorf("host log %q; want nothing said", host)
	}
}

// A guest's root controls the state directory: what it plants there must
// never make the host read elsewhere, block, or read without bound.
func TestCollectMountedRefuses(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "host-secret")
	write(t, outside, passedResult)
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, state string)
		want  string // in the error or the host log
	}{
		{"result.json a symlink out", func(t *testing.T, state string) {
			os.Symlink(outside, filepath.Join(state, "result.json"))
		}, "result.json"},
		{"result.json a symlink within", func(t *testing.T, state string) {
			write(t, filepath.Join(state, "status.json"), passedResult)
			os.Symlink("status.json", filepath.Join(state, "result.json"))
		}, "result.json"},
		{"logs a symlink to a directory out", func(t *testing.T, state string) {
			os.RemoveAll(filepath.Join(state, "logs"))
			os.Symlink(filepath.Dir(outside), filepath.Join(state, "logs"))
			write(t, filepath.Join(filepath.Dir(outside), "guest.log"), "host file")
			write(t, filepath.Join(state, "result.json"), passedResult)
		}, "logs/guest.log"},
		{"result.json a FIFO", func(t *testing.T, state string) {
			if err := syscall.Mkfifo(filepath.Join(state, "result.json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"result.json a directory", func(t *testing.T, state string) {
			os.Mkdir(filepath.Join(state, "result.json"), 0o755)
		}, "not a regular file"},
		{"result.json too large", func(t *testing.T, state string) {
			write(t, filepath.Join(state, "result.json"), strings.Repeat(" ", smallArtifactLimit+1))
		}, "larger than the limit"},
		{"result.json missing", func(t *testing.T, state string) {}, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, state, artifacts, host := stateDirJob(t)
			tc.plant(t, state)
			_, err := j.collectMounted(artifacts)
			said := host.String()
			if err != nil {
				said += err.Error()
			}
			if !strings.Contains(said, tc.want) {
				t.Fatalf("collectMounted: err %v, host log %q; want %q said", err, host, tc.want)
			}
			if b, _ := os.ReadFile(filepath.Join(artifacts, "guest.log")); bytes.Contains(b, []byte("host file")) {
				t.Fatalf("artifacts/guest.log holds a host file through a symlink")
			}
			if tc.name != "result.json missing" && tc.name != "logs a symlink to a directory out" && err == nil {
				t.Fatalf("collectMounted took a planted result.json")
			}
		})
	}
}

func TestMakeStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "job", "guest-state")
	if err := os.MkdirAll(filepath.Join(dir, "leftover"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := makeStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 || d.Path != GuestDir || d.ReadOnly || d.Source != dir {
		t.Fatalf("state dir %v, %v, disk %+v; want an empty 0700 directory mounted writable at %s", fi, err, d, GuestDir)
	}
	if _, err := os.Stat(filepath.Join(dir, "leftover")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover kept: %v", err)
	}
}
