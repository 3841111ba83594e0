package run

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
	"jerichoci/targets"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/fixtures")

// fakeOutputs realizes an output as a directory with the original's
// payload manifest, or fails for the outputs in fail.
type fakeOutputs struct {
	mu    sync.Mutex
	root  string
	fail  map[string]bool
	built []string
}

func (f *fakeOutputs) Realize(_ context.Context, installable string, log io.Writer) (RealizedOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.built = append(f.built, installable)
	out := installable[strings.Index(installable, "#")+1:]
	fmt.Fprintf(log, "building %s\n", out)
	if f.fail[out] {
		fmt.Fprintln(log, "error: builder failed with exit code 1")
		code := 1
		return RealizedOutput{}, &BuildExitError{Code: &code, Err: fmt.Errorf("nix build exited: exit status 1")}
	}
	dir := filepath.Join(f.root, "nix-store-"+strings.ReplaceAll(out, ".", "-"))
	if err := os.MkdirAll(filepath.Join(dir, "share/pikaci"), 0o755); err != nil {
		return RealizedOutput{}, err
	}
	m := `{"schema_version":1,"kind":"staged_linux_workspace_build_v1","entrypoints":[{"name":"run","relative_path":"bin/run"}],"asset_roots":[],"mounts":[{"name":"workspace_build_root","relative_path":".","guest_path":"/staged/linux-rust/workspace-build","read_only":true}]}`
	return RealizedOutput{Path: dir}, os.WriteFile(filepath.Join(dir, model.PayloadManifestRelativePath), []byte(m), 0o644)
}

func stagedJob(id, prefix, x string) PlannedJob {
	j := incusJob(id)
	j.Command = model.Staged("/staged/linux-rust/workspace-build/bin/run-" + id)
	j.Staged = true
	j.StagedLinux = &targets.StagedLinux{PrepareNodePrefix: prefix, SnapshotProfile: targets.SnapshotProfileFollowup,
		PrepareDescription:   "pika follow-up staged Linux lane",
		WorkspaceDepsOutput:  "ci.x86_64-linux." + x + "WorkspaceDeps",
		WorkspaceBuildOutput: "ci.x86_64-linux." + x + "WorkspaceBuild"}
	return j
}

func stagedRunner(t *testing.T, ex JobExecutor, outs *fakeOutputs) (testRunner, *sink) {
	r, s := newRunner(t, ex, nil)
	r.Outputs = outs
	r.Snapshot = func(_ context.Context, _, dst string, opt SnapshotOptions) (model.SnapshotMetadata, error) {
		if opt.Profile != ProfileFollowup {
			t.Errorf("snapshot profile = %q, want followup", opt.Profile)
		}
		return model.SnapshotMetadata{}, os.MkdirAll(dst, 0o755)
	}
	return r, s
}

// golden compares got (with the state root written as $STATE) with a
// file under testdata/fixtures/plans.
func golden(t *testing.T, name string, got []byte, root, store string) {
	t.Helper()
	got = bytes.ReplaceAll(got, []byte(root), []byte("$STATE"))
	got = bytes.ReplaceAll(got, []byte(store), []byte("$STORE"))
	path := filepath.Join("..", "testdata", "fixtures", "plans", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestStagedPlanAndPrepare(t *testing.T) {
	outs := &fakeOutputs{root: t.TempDir()}
	ex := &fakeExec{}
	r, s := stagedRunner(t, ex, outs)
	rec, err := r.Run(t.Context(), plan(t, stagedJob("pika-actionlint", "pika-followup-linux-rust", "pikaFollowup"),
		stagedJob("pika-doc-contracts", "pika-followup-linux-rust", "pikaFollowup")))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.StatusPassed {
		t.Fatalf("run = %+v", rec)
	}
	store := r.Store()
	runDir := store.RunDir(rec.RunID)
	for _, name := range []string{"plan.json", "prepared-outputs.json"} {
		b, err := os.ReadFile(filepath.Join(runDir, name))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "staged-two-jobs-"+name, b, r.StateRoot, outs.root)
	}
	// The shared outputs were built once each, deps first, from the snapshot.
	snap := store.SnapshotDir(rec.RunID)
	want := "path:" + snap + "#ci.x86_64-linux.pikaFollowupWorkspaceDeps path:" + snap + "#ci.x86_64-linux.pikaFollowupWorkspaceBuild"
	if got := strings.Join(outs.built, " "); got != want {
		t.Errorf("built %s, want %s", got, want)
	}
	var nodes []string
	for _, p := range rec.PrepareTimings {
		nodes = append(nodes, p.NodeID)
	}
	if got := strings.Join(nodes, " "); got != "prepare-pika-followup-linux-rust-workspace-deps prepare-pika-followup-linux-rust-workspace-build prepare-pika-actionlint-runner prepare-pika-doc-contracts-runner" {
		t.Errorf("prepare timings = %s", got)
	}
	if rec.PlanPath == nil || *rec.PlanPath != filepath.Join(runDir, "plan.json") || rec.PreparedOutputsPath == nil ||
		rec.PreparedOutputConsumer == nil || *rec.PreparedOutputConsumer != "host_local_symlink_mounts_v1" {
		t.Errorf("run record paths = %v %v %v", rec.PlanPath, rec.PreparedOutputsPath, rec.PreparedOutputConsumer)
	}
	for _, j := range rec.Jobs {
		// deps, build and the job's runner: 3 nodes of 1 ms each (fake clock).
		if j.PreExecutionPrepareDurationMS == nil || *j.PreExecutionPrepareDurationMS != 3 {
			t.Errorf("job %s pre_execution_prepare_duration_ms = %v", j.ID, j.PreExecutionPrepareDurationMS)
		}
		for _, role := range []string{"workspace-deps", "workspace-build"} {
			link := filepath.Join(store.JobDir(rec.RunID, j.ID), "staged-linux-rust", role)
			target, err := os.Readlink(link)
			if err != nil || !strings.HasPrefix(target, outs.root) {
				t.Errorf("%s -> %q, %v", link, target, err)
			}
		}
		log, _ := os.ReadFile(j.HostLogPath)
		for _, line := range []string{"[pikaci] prepare ci.x86_64-linux.pikaFollowupWorkspaceDeps: nix build",
			"building ci.x86_64-linux.pikaFollowupWorkspaceBuild\n",
			"[pikaci] prepared output consumer=host_local_symlink_mounts_v1 exposed " + filepath.Join(store.JobDir(rec.RunID, j.ID), "staged-linux-rust", "workspace-build") + " -> "} {
			if !strings.Contains(string(log), line) {
				t.Errorf("host.log of %s lacks %q:\n%s", j.ID, line, log)
			}
		}
	}
	// All staged: both jobs may run at once (PIKACI_MAX_CONCURRENT_EXECUTES).
	if got := strings.Join(s.names(), " "); !strings.HasPrefix(got, "run_started job_started:") {
		t.Errorf("events = %s", got)
	}
}

// runnerCheck fails the runner prepare node of one job.
type runnerCheck struct{ fail string }

func (c runnerCheck) PrepareRunner(_ context.Context, job executor.Job) error {
	if job.ID == c.fail {
		return fmt.Errorf("Incus image `%s` is not available in project `p` on localhost; import it first", job.Image.Alias)
	}
	return nil
}

func TestStagedPrepareFailure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fail       map[string]bool
		runnerFail string
		want       map[string]string // job -> status: message
		timings    string
	}{
		{name: "deps output fails", fail: map[string]bool{"ci.x86_64-linux.brokenWorkspaceDeps": true},
			want: map[string]string{
				"a": "failed: prepare node `prepare-broken-linux-rust-workspace-deps` failed before execute: staged prepare `ci.x86_64-linux.brokenWorkspaceDeps` failed with Some(1); see $STATE/runs/$RUN/jobs/a/host.log",
				"b": "failed: prepare node `prepare-broken-linux-rust-workspace-deps` failed before execute: staged prepare `ci.x86_64-linux.brokenWorkspaceDeps` failed with Some(1); see $STATE/runs/$RUN/jobs/a/host.log",
				"c": "skipped: not run because prepare phase stopped after `prepare-broken-linux-rust-workspace-deps` failed: staged prepare `ci.x86_64-linux.brokenWorkspaceDeps` failed with Some(1); see $STATE/runs/$RUN/jobs/a/host.log",
			},
			timings: "prepare-broken-linux-rust-workspace-deps"},
		{name: "missing image", runnerFail: "b",
			want: map[string]string{
				"a": "skipped: not run because prepare phase stopped after `prepare-b-runner` failed: Incus image `pikaci/dev` is not available in project `p` on localhost; import it first",
				"b": "failed: prepare node `prepare-b-runner` failed before execute: Incus image `pikaci/dev` is not available in project `p` on localhost; import it first",
				"c": "skipped: not run because prepare phase stopped after `prepare-b-runner` failed: Incus image `pikaci/dev` is not available in project `p` on localhost; import it first",
			},
			timings: "prepare-broken-linux-rust-workspace-deps prepare-broken-linux-rust-workspace-build prepare-a-runner prepare-b-runner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs := &fakeOutputs{root: t.TempDir(), fail: tc.fail}
			ex := &fakeExec{}
			// The executor is also the backend's runner check.
			r, s := stagedRunner(t, struct {
				*fakeExec
				runnerCheck
			}{ex, runnerCheck{fail: tc.runnerFail}}, outs)
			rec, err := r.Run(t.Context(), plan(t, stagedJob("a", "broken-linux-rust", "broken"), stagedJob("b", "broken-linux-rust", "broken"),
				stagedJob("c", "other-linux-rust", "other")))
			if err != nil {
				t.Fatal(err)
			}
			if rec.Status != model.StatusFailed || rec.FinishedAt == nil || len(ex.ran) != 0 {
				t.Errorf("run = %s, ran %v", rec.Status, ex.ran)
			}
			for _, j := range rec.Jobs {
				got := string(j.Status) + ": " + *j.Message
				got = strings.ReplaceAll(strings.ReplaceAll(got, r.StateRoot, "$STATE"), rec.RunID, "$RUN")
				if got != tc.want[j.ID] {
					t.Errorf("job %s = %s\nwant    %s", j.ID, got, tc.want[j.ID])
				}
				log, _ := os.ReadFile(j.HostLogPath)
				if !strings.Contains(string(log), "[pikaci] "+*j.Message+"\n") {
					t.Errorf("host.log of %s lacks its message:\n%s", j.ID, log)
				}
			}
			var nodes []string
			for _, p := range rec.PrepareTimings {
				nodes = append(nodes, p.NodeID)
			}
			if got := strings.Join(nodes, " "); got != tc.timings {
				t.Errorf("prepare timings = %s, want %s", got, tc.timings)
			}
			if got := strings.Join(s.names(), " "); got != "run_started run_finished" {
				t.Errorf("events = %s", got)
			}
		})
	}
}

func TestHostLocalPlanNode(t *testing.T) {
	host := PlannedJob{ID: "h", Description: "host job", TimeoutSecs: 60, Command: model.HostShell("echo 'hi'"),
		Runtime: model.HostProcessRuntime()}
	node, err := executeNode(&host)
	if err != nil || node.Type != model.ExecuteHostCommand || node.Command != "echo 'hi'" {
		t.Errorf("execute node = %+v, %v", node, err)
	}
	host.Command = model.Shell("echo")
	if _, err := executeNode(&host); err == nil || err.Error() != "host-local job `h` must use GuestCommand::HostShellCommand" {
		t.Errorf("err = %v", err)
	}
}
