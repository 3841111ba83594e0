package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// Host-local jobs of a daemon running as root run as the unprivileged
// host-jobs user (serve --host-jobs-user, default jerichoci-jobs, which
// scripts/hostjobs-up creates), with a scrubbed environment and no access
// to the state root beyond their own cache (docs/SECURITY.md).

// hostJobsUser is the default host-jobs user, or skips when this test
// does not run as root (a daemon that is not root cannot switch users).
func hostJobsUser(t *testing.T) *user.User {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "host-local jobs run as another user only under a daemon running as root")
	}
	u, err := user.Lookup("jerichoci-jobs")
	if err != nil {
		t.Fatalf("the host-jobs user: %v (run scripts/hostjobs-up)", err)
	}
	return u
}

// hostJobsCatalog writes a catalog of host-local targets, each one job
// named after it running command.
func hostJobsCatalog(t *testing.T, jobs map[string]string, secretEnv map[string][]string) string {
	t.Helper()
	var targets []any
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for k := range jobs {
			if !yield(k) {
				return
			}
		}
	}) {
		job := map[string]any{"id": id, "description": "host job " + id, "timeout_secs": 120,
			"command": map[string]any{"kind": "host_shell", "command": jobs[id]},
			"runtime": map[string]any{"kind": "host_process"}}
		if s := secretEnv[id]; len(s) > 0 {
			job["secret_env"] = s
		}
		targets = append(targets, map[string]any{"id": id, "description": "host target " + id, "jobs": []any{job}})
	}
	b, err := json.MarshalIndent(map[string]any{"schema_version": 1, "targets": targets}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostJobRunsAsUnprivilegedUser: on a root daemon with
// --allow-host-jobs and its embedded NATS server, a host-local job runs
// with `id -u` of the host-jobs user, not 0; it cannot read the NATS
// credentials (client.json), another run's host.log (nor append to it) or
// another target's workspace; its environment has no variable of the
// daemon's but the allow-list and the secret_env it declares: a
// --secret-env value it does not declare and a marker variable never
// reach it, and the one it declares does, masked in host.log and in the
// live log stream on NATS.
func TestHostJobRunsAsUnprivilegedUser(t *testing.T) {
	require(t)
	u := hostJobsUser(t)
	parent := t.TempDir()
	// The state root must be reachable for the user (serve checks).
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	stateRoot := filepath.Join(parent, "state")
	marker := "marker-" + uuid.NewString()
	declared := "declared-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	undeclared := "undeclared-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	// The daemons' environment (itest.CleanEnv).
	t.Setenv("JCI_HJ_MARKER", marker)
	t.Setenv("JCI_HJ_DECLARED", declared)
	t.Setenv("JCI_HJ_UNDECLARED", undeclared)
	snoop := `echo "uid=$(id -u)"; echo "declared=$JCI_HJ_DECLARED"; env -0 | sed -z "s/^JCI_HJ_DECLARED=.*/JCI_HJ_DECLARED=length ${#JCI_HJ_DECLARED}/" > "$ARTIFACTS/env"
while IFS= read -r p; do
  if [ -n "$p" ] && cat -- "$p" >/dev/null 2>&1; then echo "READ $p"; else echo "denied $p"; fi
done < paths.txt
if echo forged 2>/dev/null >> "$(sed -n 2p paths.txt)"; then echo APPENDED; fi
true`
	cat := hostJobsCatalog(t, map[string]string{"hj-first": "echo first-run-line", "hj-snoop": snoop},
		map[string][]string{"hj-snoop": {"JCI_HJ_DECLARED"}})
	startDaemon(t, "", "daemon-hostuser", cat, 1, "--state-root", stateRoot,
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t)),
		"--allow-host-jobs", "--secret-env", "JCI_HJ_DECLARED,JCI_HJ_UNDECLARED")
	c := readNATSClientFile(t, stateRoot)
	o := newEmbeddedOrchestrator(t, stateRoot, c)

	// A first run, whose logs and workspace the second one goes after.
	src := o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("# first\n"))))
	first := o.enqueue(t, "hj-first", src)
	res := o.waitResults(t, []string{first}, 3*time.Minute)[first]
	if res.Status != model.StatusPassed {
		t.Fatalf("job %s: %s %q, want passed", first, res.Status, model.Value(res.Message))
	}
	firstLog := filepath.Join(jobDir(stateRoot, res.RunID, "hj-first"), "host.log")
	firstBefore := readText(t, firstLog)
	targets := []string{
		filepath.Join(stateRoot, "nats", "client.json"),
		firstLog,
		filepath.Join(jobDir(stateRoot, res.RunID, "hj-first"), "artifacts", "result.json"),
		filepath.Join(stateRoot, "runs", res.RunID, "run.json"),
		filepath.Join(stateRoot, "cache", "host-local", "target-hj-first", "workspace", "README.md"),
	}
	for _, p := range targets {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the test's target %s: %v", p, err)
		}
	}

	live := liveLogs(t, o.nc)
	src = o.uploadSource(t, makeTarball(t, regEntry("paths.txt", []byte(strings.Join(targets, "\n")+"\n"))))
	id := o.enqueue(t, "hj-snoop", src)
	res = o.waitResults(t, []string{id}, 3*time.Minute)[id]
	if res.Status != model.StatusPassed {
		t.Fatalf("job %s: %s %q, want passed", id, res.Status, model.Value(res.Message))
	}
	dir := jobDir(stateRoot, res.RunID, "hj-snoop")
	hostLog := readText(t, filepath.Join(dir, "host.log"))
	t.Logf("hj-snoop host.log:\n%s", itest.Tail(hostLog, 20))

	// `id -u` is the host-jobs user's, not root's.
	if want := "\nuid=" + u.Uid + "\n"; u.Uid == "0" || !strings.Contains(hostLog, want) {
		t.Errorf("host.log lacks %q (the host-jobs user's uid)", strings.TrimSpace(want))
	}
	if strings.Contains(hostLog, "\nuid=0\n") {
		t.Errorf("the host-local job ran as root")
	}
	// Nothing of the state root beyond its own cache.
	for _, p := range targets {
		if !strings.Contains(hostLog, "\ndenied "+p+"\n") {
			t.Errorf("the job was not denied %s", p)
		}
	}
	if strings.Contains(hostLog, "\nREAD ") || strings.Contains(hostLog, "\nAPPENDED") {
		t.Errorf("the job read or appended to what it must not")
	}
	if got := readText(t, firstLog); got != firstBefore {
		t.Errorf("the first run's host.log changed:\n%s", got)
	}

	// Its environment: the allow-list and its declared secret only.
	allowed := []string{"PATH", "HOME", "TMPDIR", "LANG", "TERM", "ARTIFACTS", "CARGO_HOME", "CARGO_TARGET_DIR", "OPENCLAW_DIR",
		"JCI_HJ_DECLARED", "PWD", "SHLVL", "_"} // the last three bash sets itself
	envFile := readText(t, filepath.Join(dir, "artifacts", "env"))
	jobEnv := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(envFile, "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		jobEnv[k] = v
	}
	daemonNames := 0
	for _, kv := range append(itest.CleanEnv(), "JERICHOCI_OWNER=daemon-hostuser") {
		k, _, _ := strings.Cut(kv, "=")
		daemonNames++
		if v, ok := jobEnv[k]; ok && !slices.Contains(allowed, k) {
			t.Errorf("the job's environment has the daemon's %s=%q", k, v)
		}
	}
	for k, v := range jobEnv {
		if !slices.Contains(allowed, k) {
			t.Errorf("the job's environment has %s=%q, neither on the allow-list nor its secret_env", k, v)
		}
		if strings.Contains(v, marker) || strings.Contains(v, undeclared) {
			t.Errorf("the job's %s holds a value of the daemon's environment: %q", k, v)
		}
	}
	// (The job wrote its length, keeping the value out of its artifacts.)
	if want := fmt.Sprintf("length %d", len(declared)); jobEnv["JCI_HJ_DECLARED"] != want {
		t.Errorf("the job's JCI_HJ_DECLARED is %q, want the daemon's value (%s)", jobEnv["JCI_HJ_DECLARED"], want)
	}
	t.Logf("the job's environment: %d variables; the daemon's: %d", len(jobEnv), daemonNames)

	// The declared secret is masked in host.log and on the live stream.
	if !strings.Contains(hostLog, "\ndeclared=[MASKED]\n") {
		t.Errorf("host.log lacks the masked secret line")
	}
	for _, s := range []string{declared, undeclared, marker} {
		if strings.Contains(hostLog, s) {
			t.Errorf("host.log holds a value of the daemon's environment (%.12s…)", s)
		}
	}
	itest.WaitFor(t, "the masked line on NATS", 30*time.Second, func() bool {
		return strings.Contains(live.String(), "declared=[MASKED]\n")
	})
	if got := live.String(); strings.Contains(got, declared) || strings.Contains(got, undeclared) {
		t.Errorf("the live logs hold a secret value")
	}
	checkNoSecretInFiles(t, stateRoot, declared)
	checkNoSecretOnNATS(t, o.js, declared) // o reads as the worker
}

// TestServeRefusesHostJobsWithoutUsableUser: a root daemon with
// --allow-host-jobs exits 2, saying why, when the host-jobs user is
// missing or root, or cannot reach the state root; without
// --allow-host-jobs the user is not needed.
func TestServeRefusesHostJobsWithoutUsableUser(t *testing.T) {
	requireBinaries(t)
	hostJobsUser(t)
	cat := writeCatalog(t)
	reachable := t.TempDir()
	if err := os.Chmod(filepath.Dir(reachable), 0o711); err != nil {
		t.Fatal(err)
	}
	hidden := t.TempDir()
	if err := os.Chmod(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	missing := "jerichoci-no-such-user-" + uuid.NewString()[:8]
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		want  []string
		state string
	}{
		{"missing user", []string{"--host-jobs-user", missing}, nil,
			[]string{"--host-jobs-user", `"` + missing + `" is not usable`, "no such user"}, reachable},
		{"missing user from the environment", nil, []string{"JERICHOCI_HOST_JOBS_USER=" + missing},
			[]string{"JERICHOCI_HOST_JOBS_USER", "no such user"}, reachable},
		{"root", []string{"--host-jobs-user", "root"}, nil,
			[]string{`"root" is not usable`, "is uid 0 (root)"}, reachable},
		{"unreachable state root", nil, nil,
			[]string{"cannot reach the state root", hidden + " is mode 0700"}, filepath.Join(hidden, "state")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A bound, should serve not refuse and keep running.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, jciBin, append([]string{"serve", "--state-root", tc.state, "--catalog", cat, "--allow-host-jobs",
				"--http-listen", "", "--nats-listen", fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))}, tc.args...)...)
			cmd.Env = append(itest.CleanEnv(), tc.env...)
			code, out := exitCode(t, cmd)
			if code != 2 {
				t.Errorf("serve exited %d, want 2:\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("serve's refusal lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
