package daemon_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

// Lanes from the repository (docs/CATALOG.md): a job's source carries its
// own jerichoci.lanes.json, which the daemon merges over its catalog for
// that job; enqueue refuses, before queuing, a name neither the source's
// catalog nor the daemon's knows.

// sourceLane is one single-job target of a source's catalog file.
type sourceLane struct {
	ID, Lane string // Lane "" is a target without a lane
	Command  string
	Host     bool // a host_shell job (runtime host_process)
}

// writeSourceCatalog writes dir/jerichoci.lanes.json with lanes merged
// over the built-in catalog.
func writeSourceCatalog(t *testing.T, dir string, lanes ...sourceLane) {
	t.Helper()
	var ts []any
	for _, l := range lanes {
		job := map[string]any{"id": "job", "timeout_secs": 120,
			"command": map[string]any{"kind": "shell", "command": l.Command},
			"runtime": map[string]any{"kind": "incus", "incus": map[string]any{"guest_role": "pikaci-runner"}}}
		if l.Host {
			job["command"] = map[string]any{"kind": "host_shell", "command": l.Command}
			job["runtime"] = map[string]any{"kind": "host_process"}
		}
		tg := map[string]any{"id": l.ID, "description": "source target " + l.ID, "jobs": []any{job}}
		if l.Lane != "" {
			tg["lane"], tg["trigger"] = l.Lane, "branch"
		}
		ts = append(ts, tg)
	}
	b, err := json.MarshalIndent(map[string]any{"schema_version": 1, "targets": ts}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jerichoci.lanes.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// newRepository is a fresh directory holding only a source tree.
func newRepository(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# a user's repository\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// jci runs the jerichoci client in dir against url ("": the one its
// flags name) and returns its exit code, stdout and stderr.
func jci(t *testing.T, url, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(jciBin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnvNoCatalog()
	if url != "" {
		cmd.Env = append(cmd.Env, "JERICHOCI_NATS_URL="+url)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatalf("jerichoci %s: %v", strings.Join(args, " "), err)
	}
	return 0, stdout.String(), stderr.String()
}

// cleanEnvNoCatalog is itest.CleanEnv without a catalog file named by
// JERICHOCI_CATALOG: the client's local view is the source's own.
func cleanEnvNoCatalog() []string {
	var env []string
	for _, kv := range itest.CleanEnv() {
		if !strings.HasPrefix(kv, "JERICHOCI_CATALOG=") {
			env = append(env, kv)
		}
	}
	return env
}

// jobIDOf is the job id enqueue --wait names first ("job <id> queued …").
func jobIDOf(t *testing.T, output string) string {
	t.Helper()
	for _, line := range strings.Split(output, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "job" && f[2] == "queued" {
			return f[1]
		}
	}
	t.Fatalf("enqueue --wait named no job id:\n%s", output)
	return ""
}

// workStreamLastSeq is the sequence of the last message ever published to
// the work stream.
func workStreamLastSeq(t *testing.T, o *orchestrator) uint64 {
	t.Helper()
	s, err := o.js.Stream(t.Context(), protocol.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func TestSourceCatalogLaneRunsAndChangesWithoutRestart(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	name := "catalog-" + uuid.NewString()[:8]
	startDaemon(t, url, name, writeCatalog(t), 1, "--allow-host-jobs=false")
	o := newOrchestrator(t, url)
	repo := newRepository(t)

	var ids []string
	for i, marker := range []string{"catalog-marker-first", "catalog-marker-second"} {
		// The second round changes the lane in the source; the daemon runs on.
		writeSourceCatalog(t, repo, sourceLane{ID: "mine-target", Lane: "mine", Command: "echo " + marker})
		code, stdout, stderr := jci(t, url, repo, "enqueue", "mine", "--wait", "--timeout", "4m")
		t.Logf("round %d: exit %d\nstdout:\n%s\nstderr:\n%s", i+1, code, stdout, stderr)
		if code != 0 {
			t.Fatalf("round %d: enqueue mine --wait exited %d, want 0", i+1, code)
		}
		if !strings.Contains(stdout, "job | [runner:stdout] "+marker+"\n") {
			t.Errorf("round %d: the job's output lacks %q", i+1, marker)
		}
		if i == 1 && strings.Contains(stdout, "catalog-marker-first") {
			t.Errorf("round 2 ran the lane as it was before the change")
		}
		id := jobIDOf(t, stdout+stderr)
		res := o.result(t, id)
		if res == nil {
			t.Fatalf("round %d: no final record for %s", i+1, id)
		}
		if res.Status != model.StatusPassed || model.Value(res.TargetID) != "mine-target" {
			t.Errorf("round %d: record %s, target %s; want passed, mine-target", i+1, res.Status, model.Value(res.TargetID))
		}
		ids = append(ids, id)
	}
	checkNoInstances(t, cl, ids...)

	// The daemon's own catalog, which a source does not change.
	code, stdout, stderr := jci(t, url, repo, "targets", "list", "--daemon")
	if code != 0 || !strings.Contains(stdout, "demo-pass") || strings.Contains(stdout, "mine-target") {
		t.Errorf("targets list --daemon: exit %d, stdout:\n%s\nstderr:\n%s\nwant the daemon's demo-pass and no source target", code, stdout, stderr)
	}
}

func TestEnqueueTypoIsRefusedBeforeQueuing(t *testing.T) {
	requireBinaries(t)
	url := startNATS(t)
	startDaemon(t, url, "catalog-"+uuid.NewString()[:8], writeCatalog(t), 1)
	o := newOrchestrator(t, url)
	repo := newRepository(t)
	tests := []struct {
		name, arg, suggestion string
	}{
		{"the daemon's target", "demo-pas", "demo-pass"},
		{"a built-in lane", "check-pika-rsut", "check-pika-rust"},
		{"nothing close", "nope-nothing", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := workStreamLastSeq(t, o)
			code, stdout, stderr := jci(t, url, repo, "enqueue", tc.arg)
			t.Logf("exit %d, stderr: %s", code, stderr)
			if code != 2 {
				t.Errorf("enqueue %s: exit %d, want 2", tc.arg, code)
			}
			if stdout != "" {
				t.Errorf("enqueue %s printed %q, want no job id", tc.arg, stdout)
			}
			want := "unknown lane or target `" + tc.arg + "`"
			if tc.suggestion != "" {
				want = "did you mean `" + tc.suggestion + "`?"
			}
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr %q does not contain %q", stderr, want)
			}
			if tc.suggestion == "" && strings.Contains(stderr, "did you mean") {
				t.Errorf("stderr %q suggests something for %q", stderr, tc.arg)
			}
			if after := workStreamLastSeq(t, o); after != before {
				t.Errorf("the work stream's last sequence went from %d to %d: something was queued", before, after)
			}
		})
	}
}

func TestSourceCatalogIsBoundByTheDaemonsPolicy(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	d := startDaemon(t, url, "catalog-"+uuid.NewString()[:8], writeCatalog(t), 1, "--allow-host-jobs=false")
	o := newOrchestrator(t, url)
	repo := newRepository(t)
	writeSourceCatalog(t, repo, sourceLane{ID: "mine-host", Lane: "mine-host", Command: "echo host-ran > /tmp/catalog-host-ran-" + d.name, Host: true})
	code, stdout, stderr := jci(t, url, repo, "enqueue", "mine-host", "--wait", "--timeout", "4m")
	t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	if code != 1 {
		t.Errorf("enqueue mine-host --wait: exit %d, want 1 (the job failed)", code)
	}
	id := jobIDOf(t, stdout+stderr)
	res := o.result(t, id)
	if res == nil || len(res.Jobs) != 1 {
		t.Fatalf("record of %s: %+v; want one job", id, res)
	}
	if j := res.Jobs[0]; j.Status != model.StatusFailed || model.Value(j.Message) != run.MsgHostJobsRefused || j.ExitCode != nil {
		t.Errorf("job %s: %s %q (exit %v); want failed %q, never run", id, j.Status, model.Value(j.Message), j.ExitCode, run.MsgHostJobsRefused)
	}
	if _, err := os.Stat("/tmp/catalog-host-ran-" + d.name); !os.IsNotExist(err) {
		t.Errorf("the refused host command ran (stat: %v)", err)
	}
	checkNoInstances(t, cl, id)
}

func TestSourceCatalogErrorsFailTheJobAsInvalid(t *testing.T) {
	requireBinaries(t)
	url := startNATS(t)
	startDaemon(t, url, "catalog-"+uuid.NewString()[:8], writeCatalog(t), 1)
	o := newOrchestrator(t, url)
	bad := newRepository(t)
	// timeout_secs 0: the catalog's own error names the file, entry and field.
	if err := os.WriteFile(filepath.Join(bad, "jerichoci.lanes.json"), []byte(`{"schema_version": 1, "targets": [{"id": "mine-target",
 "lane": "mine", "trigger": "branch", "jobs": [{"id": "job", "timeout_secs": 0, "command": {"kind": "shell", "command": "true"},
 "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	none := newRepository(t)
	tests := []struct {
		name, dir, lane, want string
	}{
		{"a bad catalog file", bad, "mine", "jerichoci.lanes.json: targets[0] (\"mine-target\"): jobs[0] (\"job\"): field `timeout_secs`: must be > 0, got 0"},
		{"unknown to both", none, "mine", "unknown job `mine`"},
		{"a typo of the daemon's target", none, "demo-pas", "unknown job `demo-pas`; did you mean `demo-pass`?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := uuid.NewString()
			key := "lane"
			if tc.lane == "demo-pas" {
				key = "target"
			}
			spec, _ := json.Marshal(map[string]any{"schema_version": 1, "job_id": id, key: tc.lane, "source": hostPathSource(tc.dir)})
			o.publish(t, protocol.JobSubject(tc.lane), spec, id)
			res := o.waitResults(t, []string{id}, 2*time.Minute)[id]
			if res.Status != model.StatusFailed || !strings.Contains(model.Value(res.Message), tc.want) {
				t.Errorf("record %s %q; want failed with %q", res.Status, model.Value(res.Message), tc.want)
			}
			if len(res.Jobs) != 0 {
				t.Errorf("%d jobs ran, want none", len(res.Jobs))
			}
		})
	}
}

// TestCatalogRequestThroughTheEmbeddedServersAccounts: the client user of
// an embedded server (another account than the daemon's) asks for the
// catalog through its import, as `enqueue` and `lanes list --daemon` do.
func TestCatalogRequestThroughTheEmbeddedServersAccounts(t *testing.T) {
	requireBinaries(t)
	stateRoot := filepath.Join(t.TempDir(), "state")
	startEmbeddedDaemon(t, "catalog-"+uuid.NewString()[:8], writeCatalog(t), stateRoot, itest.FreePort(t))
	repo := newRepository(t)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"targets", "list", "--daemon"}, 0, "demo-slow"},
		{[]string{"targets", "list", "--daemon", "--json"}, 0, `"id": "demo-pass"`},
		{[]string{"lanes", "list", "--daemon"}, 0, "LANE"},
		{[]string{"enqueue", "demo-pas"}, 2, "did you mean `demo-pass`?"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := jci(t, "", repo, append(tc.args, "--state-root", stateRoot)...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d and %q", code, stdout, stderr, tc.code, tc.want)
			}
		})
	}
}
