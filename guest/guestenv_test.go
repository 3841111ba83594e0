package guest

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// The golden tests of the guest environment: each case under
// testdata/fixtures/guest/ (its README says which part of the original's
// runner each expectation comes from) is a request; the runner runs it in a
// temporary guest root and what it leaves is compared byte for byte with
// the case's files.

var update = flag.Bool("update", false, "rewrite the golden files under testdata/fixtures/guest")

const goldenDir = "../testdata/fixtures/guest"

// goldenBootID is the kernel boot id the cases' lifecycle files carry.
const goldenBootID = "0b6f5e4e-7c1d-4a8e-9d3b-2f6a1c5e8d90"

// goldenNow is the time of every stamp in the cases.
var goldenNow = time.Date(2026, 3, 19, 1, 9, 40, 0, time.UTC)

// incusExecEnv is the environment incusd gives a command run as root in a
// container over the exec API without one of its own: what the runner
// starts with in the guest (executor/incus's TestIntegrationGuestEnvironment
// shows it in a real container).
func incusExecEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "USER=root", "LANG=C.UTF-8", "container=lxc"}
}

// newGuestRoot is an empty guest root with the state directory and the
// workspace the image and the snapshot mount provide, readable by uid
// 1000. The guest's umask is 022.
func newGuestRoot(t *testing.T) string {
	t.Helper()
	syscall.Umask(0o022)
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{model.GuestStateDir, model.GuestWorkspaceDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// envDump is the command of the environment cases: who it runs as and its
// whole environment, but bash's `_` (the path of env, which differs
// between hosts).
const envDump = `id -u; id -g; id -G; env | grep -v "^_=" | LC_ALL=C sort`

func TestGuestEnvGolden(t *testing.T) {
	compiled := func(c string) string {
		s, _, err := model.Shell(c).Compile()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name       string
		request    string
		root       bool // switches to uid 1000 or gives directories away: needs root
		chownFails bool // chown fails as on a mount that does not support it
		runs       int  // the runner runs the request this many times in one guest
		wantExit   int
	}{
		{name: "user-env", root: true, wantExit: 0,
			request: req(compiled(envDump), 60, false)},
		{name: "root-env", root: true, wantExit: 0,
			request: req(compiled(envDump), 60, true)},
		{name: "exit-3", root: true, wantExit: 3,
			request: req(compiled(`echo out; echo err >&2; echo out-again; exit 3`), 60, false)},
		{name: "timeout", root: true, wantExit: 124,
			request: req(compiled(`echo before; sleep 30`), 1, false)},
		{name: "chown-unsupported", root: true, chownFails: true, wantExit: 0,
			request: req(compiled(`cd ../.. && stat -c "%u:%g %n" home/pikaci cargo-home cargo-target run/pika-cloud/xdg-state`), 60, true)},
		{name: "two-runs", root: true, runs: 2, wantExit: 0,
			request: req(compiled(`echo run`), 60, false)},
		{name: "bad-schema", wantExit: 2,
			request: `{"schema_version": 1, "command": "true", "timeout_secs": 5, "run_as_root": false}`},
		{name: "no-command", wantExit: 2,
			request: `{"schema_version": 2, "timeout_secs": 5, "run_as_root": false}`},
		{name: "bad-timeout", wantExit: 2,
			request: `{"schema_version": 2, "command": "true", "timeout_secs": 0, "run_as_root": false}`},
		{name: "no-run-as-root", wantExit: 2,
			request: `{"schema_version": 2, "command": "true", "timeout_secs": 5}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				testenv.Missing(t, "case %s switches users or gives directories away, which needs root; CI runs as root", tc.name)
			}
			fixture := filepath.Join(goldenDir, tc.name)
			root := newGuestRoot(t)
			reqPath := filepath.Join(root, model.GuestStateDir, "guest-request.json")
			if err := os.WriteFile(reqPath, []byte(tc.request), 0o644); err != nil {
				t.Fatal(err)
			}
			bootID := filepath.Join(t.TempDir(), "boot_id")
			if err := os.WriteFile(bootID, []byte(goldenBootID+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var o, e buf
			r := &Runner{Root: root, Environ: incusExecEnv, Stdout: &o, Stderr: &e,
				Now: func() time.Time { return goldenNow }, bootIDPath: bootID}
			if tc.chownFails {
				r.chown = func(string, int, int) error { return syscall.EPERM }
			}
			code := 0
			for range max(tc.runs, 1) {
				code = r.Main(t.Context(), reqPath)
			}
			if code != tc.wantExit {
				t.Errorf("runner exit code = %d, want %d; stderr %q", code, tc.wantExit, e.String())
			}
			state := filepath.Join(root, model.GuestStateDir)
			got := map[string]string{
				"request.json": tc.request,
				"stdout":       o.String(),
				"stderr":       e.String(),
				"guest.log":    readOr(filepath.Join(state, "logs", "guest.log")),
				"status.json":  readOr(filepath.Join(state, "status.json")),
				"events.jsonl": readOr(filepath.Join(state, "events.jsonl")),
				"result.json":  readOr(filepath.Join(state, "result.json")),
				"tree":         tree(t, root),
			}
			for name, content := range got {
				content = strings.ReplaceAll(content, root, "")
				path := filepath.Join(fixture, name)
				if *update {
					if err := os.MkdirAll(fixture, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("golden file: %v (go test ./guest -run TestGuestEnvGolden -update writes it)", err)
				}
				if content != string(want) {
					t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, content, want)
				}
			}
		})
	}
}

func req(command string, timeout int, root bool) string {
	b, err := model.GuestRequest{SchemaVersion: 2, Command: command, TimeoutSecs: uint64(timeout), RunAsRoot: root}.Encode()
	if err != nil {
		panic(err)
	}
	return string(b)
}

// readOr is the file's content, or a line saying it is missing.
func readOr(path string) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "(missing)\n"
	}
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)\n", err)
	}
	return string(b)
}

// tree lists everything below root, a line each: type, permission bits,
// owner (`runner` for the runner's own uid and gid, else uid:gid) and the
// guest path. Temporary names of atomic writes would show as leftovers.
func tree(t *testing.T, root string) string {
	t.Helper()
	self := strconv.Itoa(os.Getuid()) + ":" + strconv.Itoa(os.Getgid())
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		owner := fmt.Sprintf("%d:%d", st.Uid, st.Gid)
		if owner == self {
			owner = "runner"
		}
		typ := "f"
		if d.IsDir() {
			typ = "d"
		}
		lines = append(lines, fmt.Sprintf("%s %04o %s %s", typ, fi.Mode().Perm(), owner, strings.TrimPrefix(p, root)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n") + "\n"
}
