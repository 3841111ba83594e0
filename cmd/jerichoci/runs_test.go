package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stateWithRuns lays out a state root holding the original executor's legacy
// record (legacy `role` key) and a run directory without run.json.
func stateWithRuns(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	legacy, err := os.ReadFile("../../testdata/fixtures/records/run-legacy-role.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "runs", "20260319T010203Z-deadbeef")
	if err := os.MkdirAll(filepath.Join(dir, "jobs", "pika-cloud-unit"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.json"), legacy, 0o644); err != nil {
		t.Fatal(err)
	}
	// A run directory without run.json: list ignores it, gc counts it.
	os.MkdirAll(filepath.Join(root, "runs", "20260101T000000Z-00000000"), 0o755)
	return root
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, env: func(string) (string, bool) { return "", false }}
	code := c.main(t.Context(), args)
	return out.String(), errb.String(), code
}

func TestRunsCommandsReadTheOriginalsRecords(t *testing.T) {
	root := stateWithRuns(t)
	tests := []struct {
		args     []string
		code     int
		contains []string
	}{
		{[]string{"runs", "list", "--state-root", root}, 0, []string{"20260319T010203Z-deadbeef", "passed", "pre-merge-agent-contracts", "2"}},
		{[]string{"runs", "list", "--state-root", root, "--json"}, 0, []string{`"guest_role": "pikaci-runner"`, `"run_id": "20260319T010203Z-deadbeef"`}},
		{[]string{"runs", "show", "20260319T010203Z-deadbeef", "--state-root", root}, 0,
			[]string{"pika-cloud-unit", "server-agent-api-tests", "pika-managed-agents/pikaci/dev", "test passed"}},
		{[]string{"runs", "show", "nope", "--state-root", root}, 2, []string{`no run "nope" under ` + filepath.Join(root, "runs")}},
		{[]string{"runs", "show", "--state-root", root}, 2, []string{"expected one RUN_ID, got 0 arguments"}},
		{[]string{"runs", "logs", "20260319T010203Z-deadbeef", "no-such-job", "--state-root", root}, 2, []string{"job `no-such-job` not found in run `20260319T010203Z-deadbeef` (its jobs: pika-cloud-unit, server-agent-api-tests)"}},
		{[]string{"runs", "gc", "--keep-runs", "-1", "--state-root", root}, 2, []string{"--keep-runs: expected a number >= 0, got -1"}},
		{[]string{"runs", "frob"}, 2, []string{`unknown command "frob"`}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			out, errs, code := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			for _, w := range tc.contains {
				if !strings.Contains(out+errs, w) {
					t.Errorf("output lacks %q:\nstdout: %s\nstderr: %s", w, out, errs)
				}
			}
		})
	}
}

func TestRunsGC(t *testing.T) {
	root := stateWithRuns(t)
	out, errs, code := runCLI(t, "runs", "gc", "--keep-runs", "1", "--state-root", root)
	if code != 0 || out != "removed_runs=1\n20260101T000000Z-00000000\n" {
		t.Fatalf("gc: exit %d\nstdout: %q\nstderr: %s", code, out, errs)
	}
	out, _, _ = runCLI(t, "runs", "gc", "--keep-runs", "0", "--state-root", root)
	if out != "removed_runs=1\n20260319T010203Z-deadbeef\n" {
		t.Errorf("gc keep 0: %q", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "runs")); len(entries) != 0 {
		t.Errorf("runs left: %v", entries)
	}
}

func TestGroupHelpIsTheGroupsOwn(t *testing.T) {
	tests := []struct {
		group, want, notWant string
	}{
		{"runs", "Runs are read from the state root", "The catalog is"},
		{"targets", "The catalog is the built-in one", "Runs are read"},
		{"lanes", "The catalog is the built-in one", "Runs are read"},
	}
	for _, tc := range tests {
		stdout, _, code := runCLIEnv(t, nil, tc.group, "--help")
		if code != exitOK || !strings.Contains(stdout, "usage: jerichoci "+tc.group+" COMMAND") ||
			!strings.Contains(stdout, tc.want) || strings.Contains(stdout, tc.notWant) {
			t.Errorf("jerichoci %s --help: exit %d\n%s\nwant %q and not %q", tc.group, code, stdout, tc.want, tc.notWant)
		}
	}
}

// TestReadsAreOneImplementation: pikaci's name and ours of each read print
// the same records; only the framing differs, and --json is the same.
func TestReadsAreOneImplementation(t *testing.T) {
	root := fixtureState(t)
	same := []struct{ pikaci, ours []string }{
		{[]string{"status", stagedRun, "--json"}, []string{"runs", "show", stagedRun, "--json"}},
		{[]string{"list", "--json"}, []string{"runs", "list", "--json"}},
		{[]string{"gc", "--keep-runs", "10"}, []string{"runs", "gc", "--keep-runs", "10"}},
	}
	for _, tc := range same {
		p, perr, pcode := inState(t, root, tc.pikaci...)
		o, oerr, ocode := inState(t, root, tc.ours...)
		if p != o || perr != oerr || pcode != ocode || pcode != exitOK || p == "" {
			t.Errorf("%q and %q differ:\n%d %s%s\n%d %s%s", tc.pikaci, tc.ours, pcode, p, perr, ocode, o, oerr)
		}
	}
	// logs frames the same bytes that runs logs prints as they are.
	for _, kind := range []struct{ pikaci, ours string }{{"host", ""}, {"guest", "--guest"}} {
		ours := []string{"runs", "logs", failedRun, failedJob}
		if kind.ours != "" {
			ours = append(ours, kind.ours)
		}
		raw, errs, code := inState(t, root, ours...)
		framed, errs2, code2 := inState(t, root, "logs", failedRun, "--job", failedJob, "--kind", kind.pikaci)
		if code != exitOK || code2 != exitOK || raw == "" || framed != "== "+kind.pikaci+" ==\n"+raw+"\n" {
			t.Errorf("%s log: runs logs (exit %d) %q%s\nlogs (exit %d) %q%s", kind.pikaci, code, raw, errs, code2, framed, errs2)
		}
	}
}

// TestListOfUnreadableRecords: pikaci's list prints nothing when a record
// cannot be read (as the original); runs list prints the others, then the
// error. Both exit 2.
func TestListOfUnreadableRecords(t *testing.T) {
	root := fixtureState(t)
	if err := os.WriteFile(filepath.Join(root, "runs", noRecordRun, "run.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args      []string
		wantEmpty bool
	}{
		{[]string{"list"}, true},
		{[]string{"list", "--json"}, true},
		{[]string{"runs", "list"}, false},
		{[]string{"runs", "list", "--json"}, false},
	} {
		out, errs, code := inState(t, root, tc.args...)
		if code != exitUsage || !strings.Contains(errs, "some run records could not be read:") || !strings.Contains(errs, noRecordRun) {
			t.Errorf("%q: exit %d, stderr %s", tc.args, code, errs)
		}
		if (out == "") != tc.wantEmpty || !tc.wantEmpty && !strings.Contains(out, stagedRun) {
			t.Errorf("%q printed %q, want empty: %v", tc.args, out, tc.wantEmpty)
		}
	}
}

// TestLogsFollowIsAFlag: --follow is parsed by logs' flag set, in any
// spelling and place, and its flags and the run flags do not mix.
func TestLogsFollowIsAFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		// A bad JOB_ID is refused before anything is dialled: proof the
		// follow path was taken.
		{[]string{"logs", "--follow", "nope"}, "job id"},
		{[]string{"logs", "-follow", "nope"}, "job id"},
		{[]string{"logs", "--follow=true", "nope"}, "job id"},
		{[]string{"logs", "nope", "--follow"}, "job id"},
		{[]string{"logs", "--follow"}, "expected one JOB_ID, got 0 arguments"},
		{[]string{"logs", "--follow", "--job", "x", "nope"}, "--job reads a run's records; --follow takes a JOB_ID"},
		{[]string{"logs", "--follow", "--metadata-json", "nope"}, "--metadata-json reads a run's records"},
		{[]string{"logs", "run", "--nats-url", "nats://x:4222"}, "--nats-url goes with --follow"},
		// Without --follow it is a run's logs.
		{[]string{"logs", "--follow=false", "nope"}, `no run "nope"`},
	}
	for _, tc := range tests {
		_, errs, code := runCLI(t, tc.args...)
		if code != exitUsage || !strings.Contains(strings.ToLower(errs), strings.ToLower(tc.want)) {
			t.Errorf("%q: exit %d\n%s\nwant %q", tc.args, code, errs, tc.want)
		}
	}
}
