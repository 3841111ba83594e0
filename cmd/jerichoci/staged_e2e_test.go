package main

// End-to-end tests of staged targets and host-local jobs through
// `jerichoci run`, on the real incusd and the host's Nix (scripts/nix-up),
// with testdata/fixtures/staged-repo as the source: a repository with its
// own flake.nix that provides the outputs of the built-in pika-followup
// targets and a project catalog of its own.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"jerichoci/executor/incus"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// requireNix fails in CI (make test runs scripts/nix-up) and skips
// elsewhere without nix.
func requireNix(t *testing.T) {
	t.Helper()
	testenv.Needs(t, "nix (scripts/nix-up)")
	if _, err := exec.LookPath("nix"); err != nil {
		testenv.Missing(t, "needs nix on PATH (sudo scripts/nix-up installs Debian's nix-bin): %v", err)
	}
}

// stagedSource copies the fixture repository with a hello.txt of its own,
// so Nix has new outputs to build.
func stagedSource(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	if out, err := exec.Command("cp", "-a", "../../testdata/fixtures/staged-repo/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("copy fixture: %v: %s", err, out)
	}
	hello := fmt.Sprintf("hello from %s at %d\n", t.Name(), time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(dst, "src", "hello.txt"), []byte(hello), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// runIn runs `jerichoci run` in-process on src with its own catalog and
// returns the run it made under state.
func runIn(t *testing.T, cl *incus.Client, src, state string, env map[string]string, args ...string) e2eRun {
	t.Helper()
	return runWith(t, cl, filepath.Join(src, "jerichoci.lanes.json"), src, state, env, args...)
}

// runWith runs `jerichoci run --catalog catalog --source src --state-root
// state ARGS` in-process and returns the run it made.
func runWith(t *testing.T, cl *incus.Client, catalog, src, state string, env map[string]string, args ...string) e2eRun {
	t.Helper()
	t.Cleanup(func() { checkNoLeftovers(t, cl) })
	full := map[string]string{"JERICHOCI_OWNER": e2eOwner}
	for k, v := range env {
		full[k] = v
	}
	before := map[string]bool{}
	if old, _ := filepath.Glob(filepath.Join(state, "runs", "*", "run.json")); old != nil {
		for _, p := range old {
			before[p] = true
		}
	}
	var out, errb lockedBuf
	c := &cli{stdout: &out, stderr: &errb, env: func(k string) (string, bool) {
		if v, ok := full[k]; ok {
			return v, true
		}
		if k == "INCUS_SOCKET" || k == "PATH" {
			return os.LookupEnv(k)
		}
		return "", false
	}}
	argv := append([]string{"run", "--catalog", catalog, "--source", src, "--state-root", state}, args...)
	code := c.main(t.Context(), argv)
	r := e2eRun{code: code, stdout: out.String(), stderr: errb.String(), stateRoot: state, source: src}
	runs, _ := filepath.Glob(filepath.Join(state, "runs", "*", "run.json"))
	// The run this call made (run ids of one second do not sort by time).
	var newest string
	for _, p := range runs {
		if !before[p] {
			if newest != "" {
				t.Fatalf("two new runs: %s and %s", newest, p)
			}
			newest = p
		}
	}
	if newest == "" {
		t.Fatalf("no new run.json\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	var err error
	if r.runJSON, err = os.ReadFile(newest); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(r.runJSON, &r.rec); err != nil {
		t.Fatalf("run.json does not decode: %v", err)
	}
	return r
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var reStorePath = regexp.MustCompile(`/nix/store/[0-9a-z]{32}-`)

// normaliseRunFile is normalise for plan.json and prepared-outputs.json.
func normaliseRunFile(r e2eRun, b []byte) []byte {
	b = reStorePath.ReplaceAll(b, []byte("/nix/store/<hash>-"))
	return normalise(e2eRun{runJSON: b, stateRoot: r.stateRoot, source: r.source})
}

func TestE2EStagedBuiltinTarget(t *testing.T) {
	cl := requireIncus(t)
	requireNix(t)
	stagedBuiltinTarget(t, cl, nil)
}

// stagedBuiltinTarget runs the built-in pika-actionlint target twice on
// the staged fixture with the environment env: the first run builds both
// staged outputs, the second finds them in the store. It returns the
// first run's host.log.
func stagedBuiltinTarget(t *testing.T, cl *incus.Client, env map[string]string) string {
	t.Helper()
	src, state := stagedSource(t), t.TempDir()
	r := runIn(t, cl, src, state, env, "pika-actionlint")
	if r.code != exitOK || r.rec.Status != model.StatusPassed {
		t.Fatalf("exit %d, run %s\nstdout:\n%s\nstderr:\n%s", r.code, r.rec.Status, r.stdout, r.stderr)
	}
	var nodes []string
	for _, p := range r.rec.PrepareTimings {
		nodes = append(nodes, p.NodeID)
	}
	if got := strings.Join(nodes, " "); got != "prepare-pika-followup-linux-rust-workspace-deps prepare-pika-followup-linux-rust-workspace-build prepare-pika-actionlint-runner" {
		t.Errorf("prepare timings: %s", got)
	}
	j := jobByID(t, r.rec, "pika-actionlint")
	if j.PreExecutionPrepareDurationMS == nil || j.RemoteLinuxVMExecution == nil {
		t.Errorf("job record = %+v", j)
	}
	guest := readFile(t, j.GuestLogPath)
	hello := strings.TrimSpace(readFile(t, filepath.Join(src, "src", "hello.txt")))
	for _, want := range []string{"wrapper run-pika-actionlint in /workspace/snapshot", hello,
		"deps of pikaFollowup built from " + hello, "staged wrapper passed"} {
		if !strings.Contains(guest, want) {
			t.Errorf("guest.log lacks %q:\n%s", want, guest)
		}
	}
	if strings.Contains(guest, "snapshot is writable") {
		t.Errorf("the guest could write its snapshot:\n%s", guest)
	}
	host := readFile(t, j.HostLogPath)
	for _, want := range []string{"[pikaci] launching guest runner: /staged/linux-rust/workspace-build/bin/run-pika-actionlint",
		"-> /staged/linux-rust/workspace-deps (device pk-staged-l-", "building '/nix/store/"} {
		if !strings.Contains(host, want) {
			t.Errorf("host.log lacks %q", want)
		}
	}
	runDir := filepath.Join(state, "runs", r.rec.RunID)
	if r.rec.PlanPath == nil || *r.rec.PlanPath != filepath.Join(runDir, "plan.json") {
		t.Errorf("plan_path = %v", r.rec.PlanPath)
	}
	checkGolden(t, "staged-actionlint-run.json", normalise(r))
	for _, name := range []string{"plan.json", "prepared-outputs.json"} {
		checkGolden(t, "staged-actionlint-"+name, normaliseRunFile(r, []byte(readFile(t, filepath.Join(runDir, name)))))
	}
	var outs model.PreparedOutputsRecord
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(runDir, "prepared-outputs.json"))), &outs); err != nil || len(outs.Outputs) != 2 {
		t.Fatalf("prepared outputs = %+v, %v", outs, err)
	}
	for _, o := range outs.Outputs {
		link := filepath.Join(runDir, "jobs", "pika-actionlint", "staged-linux-rust", strings.TrimPrefix(o.NodeID, "prepare-pika-followup-linux-rust-"))
		if target, err := os.Readlink(link); err != nil || target != o.RealizedPath {
			t.Errorf("%s -> %q (%v), want %s", link, target, err, o.RealizedPath)
		}
	}

	// The same content again: Nix's store already has both outputs.
	again := runIn(t, cl, src, state, env, "pika-actionlint")
	if again.code != exitOK || again.rec.RunID == r.rec.RunID {
		t.Fatalf("second run: exit %d, run %s", again.code, again.rec.RunID)
	}
	host2 := readFile(t, jobByID(t, again.rec, "pika-actionlint").HostLogPath)
	if n := strings.Count(host2, "was already in the Nix store; nothing was built"); n != 2 || strings.Contains(host2, "building '/nix/store/") {
		t.Errorf("second run built again (%d reuse lines):\n%s", n, host2)
	}
	return host
}

func TestE2EStagedBrokenFlake(t *testing.T) {
	cl := requireIncus(t)
	requireNix(t)
	src, state := stagedSource(t), t.TempDir()
	r := runIn(t, cl, src, state, nil, "staged-broken")
	if r.code != exitFailed || r.rec.Status != model.StatusFailed {
		t.Fatalf("exit %d, run %s\nstderr:\n%s", r.code, r.rec.Status, r.stderr)
	}
	broken := jobByID(t, r.rec, "broken-job")
	cause := fmt.Sprintf("staged prepare `ci.x86_64-linux.brokenWorkspaceDeps` failed with Some(1); see %s", broken.HostLogPath)
	if want := "prepare node `prepare-broken-linux-rust-workspace-deps` failed before execute: " + cause; broken.Status != model.StatusFailed || *broken.Message != want {
		t.Errorf("broken-job: %s %q\nwant %q", broken.Status, *broken.Message, want)
	}
	other := jobByID(t, r.rec, "fixture-job")
	if want := "not run because prepare phase stopped after `prepare-broken-linux-rust-workspace-deps` failed: " + cause; other.Status != model.StatusSkipped || *other.Message != want {
		t.Errorf("fixture-job: %s %q\nwant %q", other.Status, *other.Message, want)
	}
	if len(r.rec.PrepareTimings) != 1 || r.rec.PrepareTimings[0].NodeID != "prepare-broken-linux-rust-workspace-deps" {
		t.Errorf("prepare timings = %+v", r.rec.PrepareTimings)
	}
	if host := readFile(t, broken.HostLogPath); !strings.Contains(host, "the broken fixture output fails on purpose") {
		t.Errorf("host.log lacks nix's build log:\n%s", host)
	}
}

func TestE2EHostLocalAndMixed(t *testing.T) {
	cl := requireIncus(t)
	requireNix(t)
	src, state := stagedSource(t), t.TempDir()
	hello := strings.TrimSpace(readFile(t, filepath.Join(src, "src", "hello.txt")))

	pass := runIn(t, cl, src, state, nil, "host-pass")
	j := jobByID(t, pass.rec, "host-pass")
	if pass.code != exitOK || j.Status != model.StatusPassed || *j.Message != "host-local command passed" || *j.ExitCode != 0 ||
		j.Executor != model.ExecutorHostLocal || j.RemoteLinuxVMExecution != nil {
		t.Errorf("host-pass: exit %d, job %+v\nstderr:\n%s", pass.code, j, pass.stderr)
	}
	if host := readFile(t, j.HostLogPath); !strings.Contains(host, hello) || !strings.Contains(host, "host-local ok") || !strings.Contains(host, "dev shell: staged-fixture\n") {
		t.Errorf("host.log:\n%s", host)
	}
	jobDir := filepath.Join(state, "runs", pass.rec.RunID, "jobs", "host-pass")
	if out := readFile(t, filepath.Join(jobDir, "artifacts", "out.txt")); !strings.Contains(out, filepath.Join(state, "cache", "host-local", "target-host-pass", "workspace")) {
		t.Errorf("out.txt = %q", out)
	}
	if res := readFile(t, filepath.Join(jobDir, "artifacts", "result.json")); !strings.Contains(res, `"message": "host-local command passed"`) {
		t.Errorf("result.json = %s", res)
	}

	fail := runIn(t, cl, src, state, nil, "host-fail")
	j = jobByID(t, fail.rec, "host-fail")
	if fail.code != exitFailed || j.Status != model.StatusFailed || *j.Message != "host-local command exited with 4" || *j.ExitCode != 4 {
		t.Errorf("host-fail: exit %d, job %+v", fail.code, j)
	}

	mixed := runIn(t, cl, src, state, nil, "mixed-followup")
	if mixed.code != exitOK || mixed.rec.Status != model.StatusPassed {
		t.Fatalf("mixed: exit %d, run %+v\nstderr:\n%s", mixed.code, mixed.rec, mixed.stderr)
	}
	if g := readFile(t, jobByID(t, mixed.rec, "staged-part").GuestLogPath); !strings.Contains(g, "staged wrapper passed") {
		t.Errorf("staged-part guest.log:\n%s", g)
	}
	if h := readFile(t, jobByID(t, mixed.rec, "host-part").HostLogPath); !strings.Contains(h, "mixed host part ok") {
		t.Errorf("host-part host.log:\n%s", h)
	}
}

func TestE2EEmptyProjectIsARecordedFailure(t *testing.T) {
	cl := requireIncus(t)
	requireNix(t)
	src, state := stagedSource(t), t.TempDir()
	r := runIn(t, cl, src, state, map[string]string{"PIKACI_REMOTE_LINUX_VM_INCUS_PROJECT": ""}, "pika-actionlint")
	j := jobByID(t, r.rec, "pika-actionlint")
	want := "prepare node `prepare-pika-actionlint-runner` failed before execute: runtime spec field `project` must be non-empty"
	// A configuration the run cannot work with: exit 2, like an infrastructure error.
	if r.code != exitUsage || r.rec.Status != model.StatusFailed || *j.Message != want {
		t.Errorf("exit %d, run %s, job %q\nstderr:\n%s", r.code, r.rec.Status, *j.Message, r.stderr)
	}
}
