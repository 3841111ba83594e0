package daemon_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

// Host-local jobs (host_process runtime, host_shell commands) and staged
// targets (Nix outputs built on the worker, mounted read-only in the guest)
// through `jerichoci serve`, on the staged fixture repository and its
// catalog (testdata/fixtures/staged-repo).

// requireNix skips (or fails in CI, where scripts/nix-up installs it) when
// the host has no nix, which staged outputs and the fixture's flake dev
// shell need.
func requireNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		msg := "needs nix on the worker host (sudo scripts/nix-up installs it): " + err.Error()
		testenv.Missing(t, "%s", msg)
	}
}

// stagedFixtureDir is the staged fixture repository.
func stagedFixtureDir() string {
	return filepath.Join(root, "testdata", "fixtures", "staged-repo")
}

// stagedFixtureCatalog is the fixture's project catalog.
func stagedFixtureCatalog() string {
	return filepath.Join(stagedFixtureDir(), "jerichoci.lanes.json")
}

// uniqueHello is src/hello.txt content no earlier test run had, so the
// fixture's derivations are new to the Nix store.
func uniqueHello(t *testing.T) string {
	return "hello from " + t.Name() + " " + uuid.NewString() + "\n"
}

// stagedFixtureTarball packs the fixture tree as an uploaded source, with
// hello as src/hello.txt.
func stagedFixtureTarball(t *testing.T, hello string) []byte {
	t.Helper()
	dir := stagedFixtureDir()
	var entries []tarEntry
	sawHello := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			entries = append(entries, dirEntry(rel))
		case d.Type().IsRegular():
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if rel == "src/hello.txt" {
				body, sawHello = []byte(hello), true
			}
			entries = append(entries, regEntry(rel, body))
		default:
			t.Fatalf("fixture %s: unexpected file type %v", p, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawHello {
		t.Fatalf("fixture %s has no src/hello.txt", dir)
	}
	return makeTarball(t, entries...)
}

// enqueue publishes one job of target on src and returns its id.
func (o *orchestrator) enqueue(t *testing.T, target string, src sourceRef) string {
	t.Helper()
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject(target), specWith(t, id, target, src, nil), id)
	return id
}

// jobOf is the record of job id in res, or fails the test.
func jobOf(t *testing.T, key string, res model.RunRecord, id string) model.JobRecord {
	t.Helper()
	for _, j := range res.Jobs {
		if j.ID == id {
			return j
		}
	}
	var ids []string
	for _, j := range res.Jobs {
		ids = append(ids, j.ID)
	}
	t.Fatalf("job %s: run %s has no job %q (jobs %q)", key, res.RunID, id, ids)
	return model.JobRecord{}
}

// checkJob asserts a job record's status, message and exit code (want
// nil: none checked).
func checkJob(t *testing.T, key string, j model.JobRecord, status model.RunStatus, message string, exit *int32) {
	t.Helper()
	if j.Status != status || model.Value(j.Message) != message {
		t.Errorf("job %s: %s is %s %q, want %s %q", key, j.ID, j.Status, model.Value(j.Message), status, message)
	}
	if exit != nil && (j.ExitCode == nil || *j.ExitCode != *exit) {
		got := "none"
		if j.ExitCode != nil {
			got = jsonString(*j.ExitCode)
		}
		t.Errorf("job %s: %s has exit code %s, want %d", key, j.ID, got, *exit)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// readText reads a file the test expects, or records the error and
// returns "".
func readText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%v", err)
		return ""
	}
	return string(b)
}

// checkContains asserts that the text of what contains every want.
func checkContains(t *testing.T, what, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, itest.Tail(text, 40))
		}
	}
}

// filesNamed lists the files called name under dir (none when dir is absent).
func filesNamed(t *testing.T, dir, name string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.IsDir() && d.Name() == name {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func i32(v int32) *int32 { return &v }

// grepLines is the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestHostJobsRefusedWithoutFlag(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	// Explicitly off, whatever JERICHOCI_ALLOW_HOST_JOBS the test runs with.
	d := startDaemon(t, url, "daemon-refuse", stagedFixtureCatalog(), 1, "--allow-host-jobs=false", "--allow-staged-builds=false")
	o := newOrchestrator(t, url)
	src := o.uploadSource(t, stagedFixtureTarball(t, uniqueHello(t)))
	id := o.enqueue(t, "host-pass", src)
	res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
	o.streamEmpty(t)
	runs := diskRuns(t, d)[id]
	checkOneDelivery(t, id, runs)
	checkOneFinal(t, id, res, runs)
	t.Logf("run %s: %s %q", res.RunID, res.Status, model.Value(res.Message))
	if res.Status != model.StatusFailed {
		t.Errorf("job %s: run %s, want failed", id, res.Status)
	}
	if len(res.Jobs) != 1 {
		t.Errorf("job %s: %d job records, want 1", id, len(res.Jobs))
	}
	j := jobOf(t, id, res, "host-pass")
	checkJob(t, id, j, model.StatusFailed, run.MsgHostJobsRefused, nil)
	if j.ExitCode != nil {
		t.Errorf("job %s: the refused job has exit code %d, want none (the command never ran)", id, *j.ExitCode)
	}
	dir := jobDir(d.stateRoot, res.RunID, "host-pass")
	hostLog := readText(t, filepath.Join(dir, "host.log"))
	checkContains(t, "host.log", hostLog, run.MsgHostJobsRefused)
	if strings.Contains(hostLog, "host-local ok") || strings.Contains(hostLog, "host-local command:") {
		t.Errorf("host.log shows the command running:\n%s", hostLog)
	}
	// The command did not run: no artifact anywhere, no host-local cache.
	if got := filesNamed(t, d.stateRoot, "out.txt"); len(got) > 0 {
		t.Errorf("the refused command wrote %q", got)
	}
	cache := filepath.Join(d.stateRoot, "cache", "host-local")
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("host-local cache %s: stat error %v, want it absent", cache, err)
	}
	checkNoInstances(t, cl, id)

	// A staged target: its outputs' prepare node refuses to build the
	// source's flake, so nothing ran on the host or in a guest.
	staged := o.enqueue(t, "pika-actionlint", src)
	res = o.waitResults(t, []string{staged}, 3*time.Minute)[staged]
	j = jobOf(t, staged, res, "pika-actionlint")
	want := "prepare node `prepare-pika-followup-linux-rust-workspace-deps` failed before execute: run staged prepare `ci.x86_64-linux.pikaFollowupWorkspaceDeps`: " + run.MsgStagedBuildsRefused
	checkJob(t, staged, j, model.StatusFailed, want, nil)
	if len(res.PrepareTimings) != 1 {
		t.Errorf("job %s: prepare timings %+v, want only the refused node", staged, res.PrepareTimings)
	}
	checkNoInstances(t, cl, staged)
}

func TestHostJobsWithFlag(t *testing.T) {
	cl := require(t)
	requireNix(t)
	url := startNATS(t)
	d := startDaemon(t, url, "daemon-host", stagedFixtureCatalog(), 1, "--allow-host-jobs")
	o := newOrchestrator(t, url)
	hello := uniqueHello(t)
	src := o.uploadSource(t, stagedFixtureTarball(t, hello))
	passID := o.enqueue(t, "host-pass", src)
	failID := o.enqueue(t, "host-fail", src)
	results := o.waitResults(t, []string{passID, failID}, 10*time.Minute)
	o.streamEmpty(t)
	runs := diskRuns(t, d)

	pass := results[passID]
	t.Logf("host-pass run %s: %s %q", pass.RunID, pass.Status, model.Value(pass.Message))
	checkOneDelivery(t, passID, runs[passID])
	checkOneFinal(t, passID, pass, runs[passID])
	if pass.Status != model.StatusPassed {
		t.Errorf("job %s: host-pass run %s %q, want passed", passID, pass.Status, model.Value(pass.Message))
	}
	checkJob(t, passID, jobOf(t, passID, pass, "host-pass"), model.StatusPassed, "host-local command passed", i32(0))
	dir := jobDir(d.stateRoot, pass.RunID, "host-pass")
	cacheDir := filepath.Join(d.stateRoot, "cache", "host-local", "target-host-pass")
	out := readText(t, filepath.Join(dir, "artifacts", "out.txt"))
	checkContains(t, "artifacts/out.txt", out, "artifact from "+filepath.Join(cacheDir, "workspace"))
	var verdict model.TerminalResult
	if b := readText(t, filepath.Join(dir, "artifacts", "result.json")); b != "" {
		if err := json.Unmarshal([]byte(b), &verdict); err != nil {
			t.Errorf("artifacts/result.json: %v\n%s", err, b)
		} else if verdict.Status != model.TerminalCompleted || verdict.ExitCode == nil || *verdict.ExitCode != 0 {
			t.Errorf("artifacts/result.json: %s", b)
		}
	}
	passLog := readText(t, filepath.Join(dir, "host.log"))
	t.Logf("host-pass host.log:\n%s", itest.Tail(passLog, 20))
	checkContains(t, "host-pass host.log", passLog, strings.TrimSpace(hello), "host-local ok")
	if fi, err := os.Stat(cacheDir); err != nil || !fi.IsDir() {
		t.Errorf("host-local cache %s: %v, want a directory", cacheDir, err)
	}
	if got := readText(t, filepath.Join(cacheDir, "workspace", "src", "hello.txt")); got != hello {
		t.Errorf("the cached workspace's src/hello.txt is %q, want the source's %q", got, hello)
	}

	fail := results[failID]
	t.Logf("host-fail run %s: %s %q", fail.RunID, fail.Status, model.Value(fail.Message))
	checkOneDelivery(t, failID, runs[failID])
	checkOneFinal(t, failID, fail, runs[failID])
	if fail.Status != model.StatusFailed {
		t.Errorf("job %s: host-fail run %s %q, want failed", failID, fail.Status, model.Value(fail.Message))
	}
	checkJob(t, failID, jobOf(t, failID, fail, "host-fail"), model.StatusFailed, "host-local command exited with 4", i32(4))
	checkContains(t, "host-fail host.log", readText(t, filepath.Join(jobDir(d.stateRoot, fail.RunID, "host-fail"), "host.log")), "failing on the host")

	checkNoInstances(t, cl, passID, failID)
}

func TestStagedThroughDaemon(t *testing.T) {
	cl := require(t)
	requireNix(t)
	url := startNATS(t)
	d := startDaemon(t, url, "daemon-staged", stagedFixtureCatalog(), 1, "--allow-host-jobs", "--allow-staged-builds")
	o := newOrchestrator(t, url)
	hello := uniqueHello(t)
	src := o.uploadSource(t, stagedFixtureTarball(t, hello))
	const (
		depsOutput  = "ci.x86_64-linux.pikaFollowupWorkspaceDeps"
		buildOutput = "ci.x86_64-linux.pikaFollowupWorkspaceBuild"
		depsNode    = "prepare-pika-followup-linux-rust-workspace-deps"
		buildNode   = "prepare-pika-followup-linux-rust-workspace-build"
	)
	reused := func(output string) string {
		return "staged Linux Rust output " + output + " was already in the Nix store; nothing was built"
	}
	// One after the other: the first builds the outputs (its source is new
	// to the store), the second finds them there.
	cases := []struct {
		target, stagedJob, hostJob string
		reused                     bool
	}{
		{target: "mixed-followup", stagedJob: "staged-part", hostJob: "host-part"},
		{target: "pika-actionlint", stagedJob: "pika-actionlint", reused: true},
	}
	var ids []string
	for _, tc := range cases {
		id := o.enqueue(t, tc.target, src)
		ids = append(ids, id)
		res := o.waitResults(t, []string{id}, 15*time.Minute)[id]
		runs := diskRuns(t, d)[id]
		t.Logf("%s run %s: %s %q", tc.target, res.RunID, res.Status, model.Value(res.Message))
		checkOneDelivery(t, id, runs)
		checkOneFinal(t, id, res, runs)
		if res.Status != model.StatusPassed {
			t.Errorf("%s (job %s): run %s %q, want passed; jobs %s", tc.target, id, res.Status, model.Value(res.Message), jsonString(res.Jobs))
		}
		var nodes []string
		for _, p := range res.PrepareTimings {
			nodes = append(nodes, p.NodeID)
		}
		for _, n := range []string{depsNode, buildNode, "prepare-" + tc.stagedJob + "-runner"} {
			if !slices.Contains(nodes, n) {
				t.Errorf("%s: prepare_timings %q lack %s", tc.target, nodes, n)
			}
		}
		runDir := filepath.Join(d.stateRoot, "runs", res.RunID)
		for _, f := range []string{"plan.json", "prepared-outputs.json"} {
			if fi, err := os.Stat(filepath.Join(runDir, f)); err != nil || fi.Size() == 0 {
				t.Errorf("%s: %s: %v (want a non-empty file)", tc.target, f, err)
			}
		}

		checkJob(t, id, jobOf(t, id, res, tc.stagedJob), model.StatusPassed, "test passed", i32(0))
		sdir := jobDir(d.stateRoot, res.RunID, tc.stagedJob)
		guestLog := readText(t, filepath.Join(sdir, "artifacts", "guest.log"))
		checkContains(t, tc.target+" "+tc.stagedJob+" guest.log", guestLog, strings.TrimSpace(hello), "staged wrapper passed")
		hostLog := readText(t, filepath.Join(sdir, "host.log"))
		t.Logf("%s: prepare nodes %q\n%s guest.log:\n%s\n%s host.log (prepare lines):\n%s", tc.target, nodes,
			tc.stagedJob, itest.Tail(guestLog, 12), tc.stagedJob, grepLines(hostLog, "staged Linux Rust output"))
		if tc.reused {
			checkContains(t, tc.target+" "+tc.stagedJob+" host.log", hostLog, reused(depsOutput), reused(buildOutput))
		} else if strings.Contains(hostLog, "was already in the Nix store") {
			t.Errorf("%s: the first run on a new source found its outputs in the Nix store:\n%s", tc.target, itest.Tail(hostLog, 40))
		}
		if tc.hostJob != "" {
			checkJob(t, id, jobOf(t, id, res, tc.hostJob), model.StatusPassed, "host-local command passed", i32(0))
			checkContains(t, tc.target+" "+tc.hostJob+" host.log",
				readText(t, filepath.Join(jobDir(d.stateRoot, res.RunID, tc.hostJob), "host.log")), "mixed host part ok")
		}
	}
	o.streamEmpty(t)
	checkNoInstances(t, cl, ids...)
}
