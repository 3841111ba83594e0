package daemon_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// Host-local jobs of one host-jobs user never run at the same time on a
// host, whichever daemon runs them; every process of the user is killed
// when a job ends; the user's process count is limited; each job has a
// TMPDIR of its own (docs/SECURITY.md, "Host-local jobs").
//
// These tests run their jobs as jerichoci-jobs-test, the second user
// scripts/hostjobs-up creates: every process of the user is killed after
// each job, and no other test's job runs as that user.

const isoUser = "jerichoci-jobs-test"

// isolationUser is isoUser, or skips when this test does not run as root.
func isolationUser(t *testing.T) *user.User {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "host-local jobs run as another user only under a daemon running as root")
	}
	u, err := user.Lookup(isoUser)
	if err != nil {
		t.Fatalf("the tests' host-jobs user: %v (run scripts/hostjobs-up)", err)
	}
	return u
}

// isoHostJob is one host-local single-job target of isolationCatalog.
type isoHostJob struct {
	command   string
	timeout   int
	secretEnv []string
}

// isolationCatalog writes testCatalog's guest targets plus host, each
// target one job named after it.
func isolationCatalog(t *testing.T, host map[string]isoHostJob) string {
	t.Helper()
	var cat map[string]any
	if err := json.Unmarshal([]byte(testCatalog), &cat); err != nil {
		t.Fatal(err)
	}
	targets := cat["targets"].([]any)
	ids := make([]string, 0, len(host))
	for id := range host {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		h := host[id]
		job := map[string]any{"id": id, "description": "host job " + id, "timeout_secs": h.timeout,
			"command": map[string]any{"kind": "host_shell", "command": h.command},
			"runtime": map[string]any{"kind": "host_process"}}
		if len(h.secretEnv) > 0 {
			job["secret_env"] = h.secretEnv
		}
		targets = append(targets, map[string]any{"id": id, "description": "host target " + id, "jobs": []any{job}})
	}
	cat["targets"] = targets
	b, err := json.MarshalIndent(cat, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// passableTempDir is a fresh temporary directory the host-jobs user can
// pass through (its parent too), as a state root must be.
func passableTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// hostLogsWith says whether a host.log below one of the state roots holds
// s.
func hostLogsWith(stateRoots []string, s string) bool {
	for _, sr := range stateRoots {
		logs, _ := filepath.Glob(filepath.Join(sr, "runs", "*", "jobs", "*", "host.log"))
		for _, p := range logs {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
				return true
			}
		}
	}
	return false
}

// ranOn is the index of the state root that holds run runID.
func ranOn(t *testing.T, stateRoots []string, runID string) int {
	t.Helper()
	for i, sr := range stateRoots {
		if _, err := os.Stat(filepath.Join(sr, "runs", runID)); err == nil {
			return i
		}
	}
	t.Fatalf("run %s is under none of the state roots", runID)
	return -1
}

// TestHostJobsOfOneUserNeverOverlap: two daemons (own state roots, one
// NATS) run host-local jobs as the same user. The first job holds until
// the second, on the other daemon, says in its host.log that it waits for
// the host-jobs user lock; each job records its start and end into its
// artifacts and into a shared log, whose order shows they did not overlap.
// The first leaves a `setsid sleep` carrying its secret in its
// environment: the second cannot read that /proc/<pid>/environ (the
// process is gone), both say in host.log that leftovers were killed, and
// no process of either job remains.
func TestHostJobsOfOneUserNeverOverlap(t *testing.T) {
	require(t)
	u := isolationUser(t)
	marker := "3000." + strconv.FormatUint(uint64(uuid.New().ID()), 10)
	secret := "iso-secret-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	t.Setenv("JCI_ISO_SECRET", secret) // the daemons' environment (itest.CleanEnv)

	// A directory both jobs write (the user's; its parent passable).
	shared := filepath.Join(passableTempDir(t), "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(shared, uid, gid); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(shared, "go")
	// Every line the command prints that the test looks for is built from
	// a variable, so host.log's echo of the command never matches it.
	cmd := `set -u
s=$(cat shared.txt); me=$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
echo "$me" > "$ARTIFACTS/me"
echo "start $me" >> "$ARTIFACTS/marks"; echo "start $me" >> "$s/order"
while read -r other pid; do
  [ "$other" = "$me" ] && continue
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -q '^JCI_ISO_SECRET='; then w=READ; else w=none; fi
  echo "$w environ of $other pid $pid"
done < <(cat "$s/pids" 2>/dev/null)
setsid sleep ` + marker + ` </dev/null >/dev/null 2>&1 & left=$!
until [ "$(ps -o sid= -p "$left" | tr -d ' ')" = "$left" ]; do sleep 0.05; done
echo "$me $left" >> "$s/pids"; echo "$me $$" >> "$s/pids"
w=holding; echo "$w $me"
while [ ! -e "$s/go" ]; do sleep 0.1; done
echo "end $me" >> "$ARTIFACTS/marks"; echo "end $me" >> "$s/order"
`
	cat := isolationCatalog(t, map[string]isoHostJob{"iso-order": {command: cmd, timeout: 600, secretEnv: []string{"JCI_ISO_SECRET"}}})
	url := startNATS(t)
	var stateRoots []string
	for _, name := range []string{"daemon-iso-a", "daemon-iso-b"} {
		sr := filepath.Join(passableTempDir(t), "state")
		stateRoots = append(stateRoots, sr)
		startDaemon(t, url, name, cat, 1, "--state-root", sr, "--allow-host-jobs", "--host-jobs-user", isoUser,
			"--secret-env", "JCI_ISO_SECRET")
	}
	o := newOrchestrator(t, url)
	src := o.uploadSource(t, makeTarball(t, regEntry("shared.txt", []byte(shared+"\n"))))
	defer func() { _ = os.WriteFile(gate, nil, 0o644) }() // whatever failed, let the jobs end

	first := o.enqueue(t, "iso-order", src)
	itest.WaitFor(t, "the first job to start", 3*time.Minute, func() bool {
		b, _ := os.ReadFile(filepath.Join(shared, "order"))
		return strings.HasPrefix(string(b), "start ")
	})
	// The first job's daemon has its one worker busy: the other takes this.
	second := o.enqueue(t, "iso-order", src)
	itest.WaitFor(t, "the second job to wait for the host-jobs user lock", 3*time.Minute, func() bool {
		return hostLogsWith(stateRoots, "waiting for host-jobs user lock /run/jerichoci/host-jobs-"+u.Uid+".lock")
	})
	if b, err := os.ReadFile(filepath.Join(shared, "order")); err != nil || strings.Count(string(b), "start ") != 1 {
		t.Fatalf("the second job started while the first runs as the same user: %q (%v)", b, err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := o.waitResults(t, []string{first, second}, 5*time.Minute)
	var mes []string
	var logs []string
	for _, id := range []string{first, second} {
		r := res[id]
		if r.Status != model.StatusPassed {
			t.Fatalf("job %s: %s %q, want passed", id, r.Status, model.Value(r.Message))
		}
		dir := jobDir(stateRoots[ranOn(t, stateRoots, r.RunID)], r.RunID, "iso-order")
		me := strings.TrimSpace(readText(t, filepath.Join(dir, "artifacts", "me")))
		mes = append(mes, me)
		if got, want := readText(t, filepath.Join(dir, "artifacts", "marks")), "start "+me+"\nend "+me+"\n"; got != want {
			t.Errorf("job %s's own marks: %q, want %q", id, got, want)
		}
		log := readText(t, filepath.Join(dir, "host.log"))
		logs = append(logs, log)
		t.Logf("job %s host.log:\n%s", id, itest.Tail(log, 14))
		if !strings.Contains(log, "leftover process(es) of "+isoUser+" (uid "+u.Uid+") after the job") {
			t.Errorf("job %s's host.log does not say its leftovers were killed", id)
		}
		if strings.Contains(log, secret) {
			t.Errorf("job %s's host.log holds the secret", id)
		}
	}
	if ranOn(t, stateRoots, res[first].RunID) == ranOn(t, stateRoots, res[second].RunID) {
		t.Errorf("both jobs ran on one daemon; the test wants one on each")
	}
	want := "start " + mes[0] + "\nend " + mes[0] + "\nstart " + mes[1] + "\nend " + mes[1] + "\n"
	if got := readText(t, filepath.Join(shared, "order")); got != want {
		t.Errorf("the jobs' shared marks:\n%s\nwant the first's start and end, then the second's:\n%s", got, want)
	}
	// The second job looked for the first's two processes and found
	// neither's environment.
	if n := strings.Count(logs[1], "\nnone environ of "+mes[0]+" pid "); n != 2 || strings.Contains(logs[1], "READ environ") {
		t.Errorf("the second job's view of the first's processes (want 2 without environment, %d):\n%s", n, logs[1])
	}
	if !strings.Contains(logs[1], "acquired host-jobs user lock /run/jerichoci/host-jobs-"+u.Uid+".lock after ") {
		t.Errorf("the second job's host.log does not say it got the lock after waiting")
	}
	if pids := itest.LiveWithMarker(t, marker); len(pids) > 0 {
		t.Errorf("processes the jobs left still run: %v", pids)
	}
}

// TestHostJobForkBombIsContained: a host-local job that forks without end
// (each process forks again, up to 2^11 of them were there no limit) stops
// at --host-jobs-max-processes and times out; a guest job enqueued with it
// passes; none of the bomb's processes remain; the host still forks and
// the next host job of the same daemon passes.
func TestHostJobForkBombIsContained(t *testing.T) {
	require(t)
	isolationUser(t)
	marker := "bomb-" + uuid.NewString()
	// Bounded even without the limit: 11 doublings, 2048 processes.
	bomb := `echo "nproc $(ulimit -Hu)"
exec perl -e '# ` + marker + `
$| = 1; for (1..11) { my $p = fork(); if (!defined $p) { print "fork failed: $!\n"; last } } sleep 600'`
	cat := isolationCatalog(t, map[string]isoHostJob{
		"iso-bomb":  {command: bomb, timeout: 30},
		"iso-after": {command: `w=ok; echo "after $w $(id -u)"`, timeout: 120},
	})
	url := startNATS(t)
	sr := filepath.Join(passableTempDir(t), "state")
	startDaemon(t, url, "daemon-iso-bomb", cat, 2, "--state-root", sr, "--allow-host-jobs", "--host-jobs-user", isoUser,
		"--host-jobs-max-processes", "64")
	o := newOrchestrator(t, url)
	src := o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("# fork bomb neighbour\n"))))
	bombID := o.enqueue(t, "iso-bomb", src)
	guestID := o.enqueue(t, "demo-pass", src)
	res := o.waitResults(t, []string{bombID, guestID}, 5*time.Minute)

	if r := res[guestID]; r.Status != model.StatusPassed {
		t.Errorf("the guest job beside the fork bomb: %s %q, want passed", r.Status, model.Value(r.Message))
	}
	r := res[bombID]
	log := readText(t, filepath.Join(jobDir(sr, r.RunID, "iso-bomb"), "host.log"))
	t.Logf("fork bomb host.log:\n%s", itest.Tail(log, 12))
	if j := jobOf(t, bombID, r, "iso-bomb"); r.Status != model.StatusFailed || model.Value(j.Message) != "timed out after 30s" {
		t.Errorf("the fork bomb: %s, job %s %q, want failed, timed out after 30s", r.Status, j.Status, model.Value(j.Message))
	}
	if !strings.Contains(log, "\nnproc 64\n") || !strings.Contains(log, "\nfork failed: Resource temporarily unavailable\n") {
		t.Errorf("the fork bomb's host.log does not show it stopped at the limit of 64")
	}
	if pids := itest.LiveWithMarker(t, marker); len(pids) > 0 {
		t.Errorf("processes of the fork bomb still run: %v", pids)
	}
	// The host forks, and the user runs the next job.
	if out, err := exec.CommandContext(t.Context(), "true").CombinedOutput(); err != nil {
		t.Errorf("the host cannot run a process after the fork bomb: %v %s", err, out)
	}
	after := o.enqueue(t, "iso-after", src)
	if r := o.waitResults(t, []string{after}, 3*time.Minute)[after]; r.Status != model.StatusPassed {
		t.Errorf("the host job after the fork bomb: %s %q, want passed", r.Status, model.Value(r.Message))
	}
}
