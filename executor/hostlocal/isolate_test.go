package hostlocal

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"jerichoci/internal/mask"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// testUser is the second user scripts/hostjobs-up creates, for tests
// only: every process of a host-jobs user is killed after each of its
// jobs, so these tests run as one no other test's jobs run as.
const testUser = "jerichoci-jobs-test"

// jobUser is testUser, for the tests that run a job as another user: they
// need root (the tests run as root on the project's machines, as serve
// does).
func jobUser(t *testing.T) *User {
	t.Helper()
	testenv.Needs(t, "root and the user "+testUser+" (scripts/hostjobs-up)")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "running a host-local job as another user needs root")
	}
	u, err := LookupUser(testUser)
	if err != nil {
		t.Fatalf("%v (run scripts/hostjobs-up)", err)
	}
	return u
}

// isolatedFixture is a fixture whose executor runs jobs as u, with the
// test's temporary directories passable for u (as a state root must be).
func isolatedFixture(t *testing.T, u *User) *fixture {
	t.Helper()
	f := newFixture(t)
	for _, d := range []string{filepath.Dir(f.root), f.root} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	f.x.Isolate = &Isolation{User: u, MaxProcesses: DefaultMaxProcesses}
	if err := os.MkdirAll(f.state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckReachable(u, f.state); err != nil {
		t.Fatal(err)
	}
	return f
}

func ownerOf(t *testing.T, p string) uint32 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

func modeOf(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestIsolatedJobUserAndEnvironment: the command runs as the job user with
// no supplementary groups and an environment of the allow-list and its
// secret_env only; the daemon's other variables (in its process
// environment and in the environment the executor reads) never reach it,
// and the secret is masked in the host log.
func TestIsolatedJobUserAndEnvironment(t *testing.T) {
	u := jobUser(t)
	f := isolatedFixture(t, u)
	const secret = "iso-SECRET-4242"
	t.Setenv("JCI_DAEMON_PROCESS_MARKER", "process-marker-value")
	f.x.Env = env("PATH", "/usr/bin:/bin", "LANG", "C.UTF-8", "TERM", "dumb",
		"JCI_DAEMON_MARKER", "daemon-marker-value", "JCI_UNDECLARED_SECRET", "undeclared-value")
	cmd := `id -u > "$ARTIFACTS/uid"; id -G > "$ARTIFACTS/groups"; env -0 > "$ARTIFACTS/env"; ` +
		`test -O "$HOME" && test -O "$TMPDIR" && test -w . && test -w "$CARGO_HOME" && test -w "$CARGO_TARGET_DIR" && echo "writable ok"; echo "s=$JCI_S"`
	j := f.job("iso", f.snapshot("s", map[string]string{"a.txt": "a"}, "h1"), cmd)
	j.SecretEnv, j.Mask = map[string]string{"JCI_S": secret}, mask.New(secret)
	res, err := f.x.Execute(context.Background(), j)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, logOf(j))
	}
	arts := filepath.Join(j.JobDir, "artifacts")
	if got := strings.TrimSpace(readFile(t, filepath.Join(arts, "uid"))); got != strconv.Itoa(int(u.UID)) {
		t.Errorf("id -u = %q, want %d", got, u.UID)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(arts, "groups"))); got != strconv.Itoa(int(u.GID)) {
		t.Errorf("id -G = %q, want only the user's group %d", got, u.GID)
	}
	allowed := []string{"PATH", "HOME", "TMPDIR", "LANG", "TERM", "ARTIFACTS", "CARGO_HOME", "CARGO_TARGET_DIR", "JCI_S",
		"PWD", "SHLVL", "_"} // the last three bash sets itself
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(readFile(t, filepath.Join(arts, "env")), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
		if !slices.Contains(allowed, k) {
			t.Errorf("the job's environment has %s=%q, not on the allow-list", k, v)
		}
	}
	cache := f.cache(j)
	for k, want := range map[string]string{"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb", "JCI_S": secret,
		"HOME": filepath.Join(cache, "home"), "TMPDIR": filepath.Join(cache, "tmp"), "ARTIFACTS": filepath.Join(cache, "artifacts"),
		"CARGO_HOME": filepath.Join(cache, "cargo-home"), "CARGO_TARGET_DIR": filepath.Join(cache, "cargo-target")} {
		if got[k] != want {
			t.Errorf("the job's %s = %q, want %q", k, got[k], want)
		}
	}
	log := logOf(j)
	if !strings.Contains(log, "\nwritable ok\n") || !strings.Contains(log, "\ns=[MASKED]\n") || strings.Contains(log, secret) {
		t.Errorf("host log (want writable ok and the secret masked):\n%s", log)
	}
	// Handed back: the artifacts are root's, in the job's directory; the
	// staged copy and HOME are gone; the cache is closed again.
	for _, p := range []string{arts, filepath.Join(arts, "uid"), filepath.Join(arts, "result.json")} {
		if o := ownerOf(t, p); o != 0 {
			t.Errorf("%s is uid %d's after the job, want root's", p, o)
		}
	}
	for _, p := range []string{filepath.Join(cache, "artifacts"), filepath.Join(cache, "home"), filepath.Join(cache, "tmp")} {
		if exists(p) {
			t.Errorf("%s is still there after the job", p)
		}
	}
	if m := modeOf(t, cache); m != scopeIdle {
		t.Errorf("the scope's cache %s is mode %04o after the job, want %04o", cache, m, scopeIdle)
	}
	if m := modeOf(t, filepath.Join(cache, ".lock")); m != 0o600 {
		t.Errorf("the cache lock is mode %04o, want 0600 (a lock the user can open, it can hold)", m)
	}
	if o := ownerOf(t, filepath.Join(cache, "workspace", "a.txt")); o != u.UID {
		t.Errorf("the workspace's a.txt is uid %d's, want the job user's %d", o, u.UID)
	}
}

// TestIsolatedJobFileAccess: a job run as the user reads none of what the
// state root holds beyond its own cache: the NATS credentials, another
// run's host log and artifacts, another scope's workspace, the shared
// cargo home, a file put in the state root later; and a link it leaves as
// artifacts/result.json does not make root write through it.
func TestIsolatedJobFileAccess(t *testing.T) {
	u := jobUser(t)
	f := isolatedFixture(t, u)
	secrets := map[string]string{
		"nats/client.json": `{"password":"p"}`,
		"runs/20260101T000000Z-00000000/jobs/other/host.log":            "other run's log",
		"runs/20260101T000000Z-00000000/jobs/other/artifacts/guest.log": "other run's guest log",
		"cache/host-local/target-other/workspace/secret.txt":            "other scope",
		"cache/cargo-home/registry.txt":                                 "shared crates",
	}
	for p, body := range secrets {
		writeFile(t, filepath.Join(f.state, p), body) // 0644 in 0755 directories
	}
	if err := PrepareStateRoot(f.state); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.state, "later", "made-after-start.txt"), "later")
	secrets["later/made-after-start.txt"] = "later"
	victim := filepath.Join(f.root, "victim.txt")
	writeFile(t, victim, "untouched")
	var cmd strings.Builder
	for p := range secrets {
		q := model.ShellQuote(filepath.Join(f.state, p))
		cmd.WriteString("if cat " + q + " 2>/dev/null; then echo 'READ " + p + "'; else echo 'denied " + p + "'; fi; ")
	}
	cmd.WriteString(`ls "` + f.state + `" >/dev/null 2>&1 && echo 'LISTED the state root'; `)
	cmd.WriteString(`ln -s ` + model.ShellQuote(victim) + ` "$ARTIFACTS/result.json"; ln -s ` + model.ShellQuote(victim) + ` "$ARTIFACTS/guest.log"; echo kept > "$ARTIFACTS/kept.txt"`)
	j := f.job("snoop", f.snapshot("s", nil, "h1"), cmd.String())
	res, err := f.x.Execute(context.Background(), j)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, logOf(j))
	}
	log := logOf(j)
	t.Logf("host log:\n%s", log)
	for p := range secrets {
		if !strings.Contains(log, "\ndenied "+p+"\n") {
			t.Errorf("the job was not denied %s", p)
		}
	}
	if strings.Contains(log, "\nREAD ") || strings.Contains(log, "\nLISTED") {
		t.Errorf("the job read or listed what it must not")
	}
	if got := readFile(t, victim); got != "untouched" {
		t.Errorf("the file behind the job's artifacts/result.json link now holds %q", got)
	}
	arts := filepath.Join(j.JobDir, "artifacts")
	for _, name := range []string{"result.json", "guest.log"} {
		if fi, err := os.Lstat(filepath.Join(arts, name)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("artifacts/%s: %v, want the runner's regular file", name, err)
		}
	}
	if got := readFile(t, filepath.Join(arts, "kept.txt")); got != "kept\n" {
		t.Errorf("artifacts/kept.txt = %q", got)
	}
}

// TestIsolatedWorkspaceReuseIsTheDaemonsCall: a job that rewrites its
// workspace's pikaci-snapshot.json to claim the next source's content hash
// does not get its workspace reused by that source's job.
func TestIsolatedWorkspaceReuseIsTheDaemonsCall(t *testing.T) {
	u := jobUser(t)
	f := isolatedFixture(t, u)
	forged := `{"source_root":"/x","snapshot_dir":"/x","created_at":"2026-03-19T01:09:40+00:00","content_hash":"h2"}`
	cmd := `echo poisoned > a.txt; printf '%s' ` + model.ShellQuote(forged) + ` > pikaci-snapshot.json`
	first := f.job("scope", f.snapshot("s1", map[string]string{"a.txt": "clean"}, "h1"), cmd)
	if res, err := f.x.Execute(context.Background(), first); err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, logOf(first))
	}
	second := f.job("scope", f.snapshot("s2", map[string]string{"a.txt": "clean"}, "h2"), `cat a.txt`)
	if res, err := f.x.Execute(context.Background(), second); err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, logOf(second))
	}
	log := logOf(second)
	if !strings.Contains(log, "host-local workspace rematerialized") || strings.Contains(log, "poisoned") || !strings.Contains(log, "\nclean") {
		t.Errorf("the second job ran in the first one's workspace:\n%s", log)
	}
	// The same source again: the workspace is reused.
	third := f.job("scope", f.snapshot("s3", map[string]string{"a.txt": "clean"}, "h2"), `true`)
	if res, err := f.x.Execute(context.Background(), third); err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	if log := logOf(third); !strings.Contains(log, "host-local workspace reused unchanged snapshot") {
		t.Errorf("the same source did not reuse the workspace:\n%s", log)
	}
}

func TestLookupUserRefusesRoot(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"root", "is uid 0 (root)"},
		{"jerichoci-no-such-user-" + strconv.Itoa(os.Getpid()), "no such user"},
		{"", "no user named"},
	} {
		if _, err := LookupUser(tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LookupUser(%q) = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

func TestCheckReachable(t *testing.T) {
	u := &User{Name: "someone", UID: 4242, GID: 4242}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	err := CheckReachable(u, state)
	if err == nil || !strings.Contains(err.Error(), dir+" is mode 0700") {
		t.Fatalf("CheckReachable under a 0700 directory = %v, want it named", err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckReachable(u, state); err != nil {
		t.Fatalf("CheckReachable = %v, want nil", err)
	}
}
