package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/internal/treecopy"
	"jerichoci/model"
)

// The fixture state root under testdata/fixtures/cli/state was "written on
// another machine": its records name paths under
// /var/lib/other-host/.pikaci that do not exist here. It holds a passed
// staged run (plan.json, prepared-outputs.json, prepare timings), a failed
// run with a fail-fast skipped job, a skipped run, and a run directory
// without run.json.
const (
	cliFixtures  = "../../testdata/fixtures/cli"
	otherHost    = "/var/lib/other-host/.pikaci"
	stagedRun    = "20260319T010203Z-5ea9ed01" // pre-merge-pika-rust, passed
	failedRun    = "20260320T093015Z-0badf00d" // pre-merge-agent-contracts, failed
	skippedRun   = "20260318T220000Z-5c1bbed0" // pre-merge-pikachat-rust, skipped by filters
	noRecordRun  = "20260317T120000Z-deadbeef" // no run.json
	stagedJob1   = "pika-core-lib-app-flows-tests"
	failedJob    = "server-agent-api-tests"
	failFastSkip = "core-agent-nip98-test"
)

// fixtureState copies the fixture state root into a temporary directory,
// so tests may change it and outputs name a path they can replace.
func fixtureState(t *testing.T) string {
	t.Helper()
	src := filepath.Join(cliFixtures, "state")
	dst := t.TempDir()
	if err := treecopy.Copy(t.Context(), src, dst, treecopy.Options{}); err != nil {
		t.Fatal(err)
	}
	return dst
}

// runCLIEnv runs the command line with env as the whole environment.
func runCLIEnv(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, env: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}}
	code := c.main(t.Context(), args)
	return out.String(), errb.String(), code
}

// inState runs the command line with --state-root root before the command
// and writes $STATE for root in what it prints.
func inState(t *testing.T, root string, args ...string) (string, string, int) {
	t.Helper()
	out, errs, code := runCLI(t, append([]string{"--state-root", root}, args...)...)
	return strings.ReplaceAll(out, root, "$STATE"), strings.ReplaceAll(errs, root, "$STATE"), code
}

// checkCLIGolden compares got with testdata/fixtures/cli/golden/name byte for
// byte; go test -update rewrites the file.
func checkCLIGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(cliFixtures, "golden", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestPikaciCommandsGolden(t *testing.T) {
	root := fixtureState(t)
	tests := []struct {
		golden string
		args   []string
	}{
		{"status-staged.txt", []string{"status", stagedRun}},
		{"status-failed.txt", []string{"status", failedRun}},
		{"status-skipped.txt", []string{"status", skippedRun}},
		{"status-staged.json", []string{"status", stagedRun, "--json"}},
		{"status-failed.json", []string{"status", "--json", failedRun}},
		{"logs-staged.txt", []string{"logs", stagedRun}},
		{"logs-staged-host.txt", []string{"logs", stagedRun, "--kind", "host"}},
		{"logs-staged-guest.txt", []string{"logs", stagedRun, "--kind", "guest"}},
		{"logs-failed-job.txt", []string{"logs", failedRun, "--job", failedJob}},
		{"logs-failed-job-host.txt", []string{"logs", failedRun, "--job", failedJob, "--kind", "host"}},
		{"logs-skipped-job.txt", []string{"logs", failedRun, "--job", failFastSkip}},
		{"logs-staged-metadata.json", []string{"logs", stagedRun, "--metadata-json"}},
		{"logs-failed-job-metadata.json", []string{"logs", failedRun, "--job", failedJob, "--metadata-json"}},
		{"logs-skipped-run-metadata.json", []string{"logs", skippedRun, "--metadata-json"}},
		{"list.txt", []string{"list"}},
		{"prepared-outputs.txt", []string{"prepared-outputs", stagedRun}},
		{"prepared-outputs.json", []string{"prepared-outputs", stagedRun, "--json"}},
		{"staged-linux-target-info-pre-merge-pika-followup.txt", []string{"staged-linux-target-info", "pre-merge-pika-followup"}},
		{"staged-linux-target-info-pre-merge-pika-followup.json", []string{"staged-linux-target-info", "pre-merge-pika-followup", "--json"}},
		{"staged-linux-target-info-pre-merge-pika-rust.txt", []string{"staged-linux-target-info", "pre-merge-pika-rust"}},
		{"staged-linux-target-info-pre-merge-pika-rust.json", []string{"staged-linux-target-info", "--json", "pre-merge-pika-rust"}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			out, errs, code := inState(t, root, tc.args...)
			if tc.golden == "status-failed.txt" {
				errs = "" // why it failed, on stderr: TestStatusOfAFailedRunSaysWhy
			}
			if code != exitOK || errs != "" {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			checkCLIGolden(t, tc.golden, out)
		})
	}
}

// TestStatusJSONIsTheRecord: status --json of a record written by the
// original gives back its run.json byte for byte.
func TestStatusJSONIsTheRecord(t *testing.T) {
	root := fixtureState(t)
	for _, id := range []string{stagedRun, failedRun, skippedRun} {
		out, _, code := runCLI(t, "status", id, "--json", "--state-root", root)
		want, err := os.ReadFile(filepath.Join(root, "runs", id, "run.json"))
		if err != nil {
			t.Fatal(err)
		}
		if code != exitOK || out != string(want) {
			t.Errorf("status %s --json: exit %d, output differs from run.json:\n%s", id, code, out)
		}
	}
}

// TestLogsResolveCopiedRecords: the logs are read from this state root when
// the recorded paths (another host's) do not exist, and from the recorded
// path when it does.
func TestLogsResolveCopiedRecords(t *testing.T) {
	root := fixtureState(t)
	if _, err := os.Stat(otherHost); err == nil {
		t.Skipf("%s exists on this host", otherHost)
	}
	hostLog := filepath.Join(root, "runs", stagedRun, "jobs", stagedJob1, "host.log")
	want, _ := os.ReadFile(hostLog)
	out, _, code := runCLI(t, "logs", stagedRun, "--kind", "host", "--state-root", root)
	if code != exitOK || out != "== host ==\n"+string(want)+"\n" {
		t.Errorf("logs: exit %d\n%s", code, out)
	}
	// A record naming a path that exists here is read there.
	elsewhere := filepath.Join(t.TempDir(), "host.log")
	os.WriteFile(elsewhere, []byte("from the recorded path\n"), 0o644)
	rewriteRun(t, root, stagedRun, func(r *model.RunRecord) { r.Jobs[0].HostLogPath = elsewhere })
	out, _, code = runCLI(t, "logs", stagedRun, "--kind", "host", "--state-root", root)
	if code != exitOK || out != "== host ==\nfrom the recorded path\n\n" {
		t.Errorf("logs with a local recorded path: exit %d\n%q", code, out)
	}
	// runs logs, the older view, resolves them too.
	out, errs, code := runCLI(t, "runs", "logs", failedRun, failedJob, "--state-root", root)
	if code != exitOK || !strings.Contains(out, "list_agents_paginates ... FAILED") {
		t.Errorf("runs logs: exit %d\n%s\n%s", code, out, errs)
	}
}

func rewriteRun(t *testing.T, root, id string, edit func(*model.RunRecord)) {
	t.Helper()
	p := filepath.Join(root, "runs", id, "run.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var r model.RunRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	edit(&r)
	if b, err = model.EncodeFile(r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGCGolden(t *testing.T) {
	root := fixtureState(t)
	out, errs, code := inState(t, root, "gc")
	if code != exitOK || out != "removed_runs=0\n" || errs != "" {
		t.Fatalf("gc (keep 10): exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = inState(t, root, "gc", "--keep-runs", "2")
	if code != exitOK || errs != "" {
		t.Fatalf("gc: exit %d\n%s%s", code, out, errs)
	}
	checkCLIGolden(t, "gc-keep-2.txt", out)
	left, _ := os.ReadDir(filepath.Join(root, "runs"))
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != stagedRun+" "+failedRun {
		t.Errorf("runs left: %v", names)
	}
}

// cliErrorCase is a command line that must fail with want in stderr (with
// $STATE for the state root, a copy of the fixture one) and print nothing
// on stdout.
type cliErrorCase struct {
	name  string
	setup func(t *testing.T, root string)
	args  []string
	code  int
	want  string
}

func checkCLIErrors(t *testing.T, tests []cliErrorCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fixtureState(t)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			out, errs, code := inState(t, root, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want %d\nstderr:\n%s\nwant in it:\n%s", code, tc.code, errs, tc.want)
			}
			if out != "" {
				t.Errorf("stdout not empty:\n%s", out)
			}
		})
	}
}

func TestPikaciCommandErrors(t *testing.T) {
	checkCLIErrors(t, []cliErrorCase{
		{name: "unknown run", args: []string{"status", "20990101T000000Z-00000000"}, code: exitUsage,
			want: `jerichoci: no run "20990101T000000Z-00000000" under $STATE/runs`},
		{name: "unknown run logs", args: []string{"logs", "nope"}, code: exitUsage, want: `no run "nope" under $STATE/runs`},
		{name: "unknown job", args: []string{"logs", stagedRun, "--job", "nope"}, code: exitUsage,
			want: "jerichoci: job `nope` not found in run `" + stagedRun + "` (its jobs: pika-core-lib-app-flows-tests, pika-core-messaging-e2e-tests)\n"},
		{name: "unknown job metadata", args: []string{"logs", stagedRun, "--job", "nope", "--metadata-json"}, code: exitUsage,
			want: "job `nope` not found in run `" + stagedRun + "`"},
		{name: "logs of a run without jobs", args: []string{"logs", skippedRun}, code: exitUsage,
			want: "jerichoci: run `" + skippedRun + "` has no jobs\n"},
		{name: "unreadable host log",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "runs", stagedRun, "jobs", stagedJob1, "host.log"))
			},
			args: []string{"logs", stagedRun}, code: exitUsage,
			want: "jerichoci: host log of job `" + stagedJob1 + "` in run `" + stagedRun + "`: open " + otherHost + "/runs/" + stagedRun + "/jobs/" + stagedJob1 +
				"/host.log: no such file or directory (nor is it under the state root: $STATE/runs/" + stagedRun + "/jobs/" + stagedJob1 + "/host.log)\n"},
		{name: "unreadable guest log",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "runs", failedRun, "jobs", failedJob, "artifacts", "guest.log"))
			},
			args: []string{"logs", failedRun, "--job", failedJob, "--kind", "guest"}, code: exitUsage,
			want: "/jobs/" + failedJob + "/artifacts/guest.log: no such file or directory (nor is it under the state root: $STATE/runs/" + failedRun + "/jobs/" + failedJob + "/artifacts/guest.log)"},
		{name: "bad kind", args: []string{"logs", stagedRun, "--kind", "all"}, code: exitUsage, want: `--kind: expected host, guest or both, got "all"`},
		{name: "missing prepared outputs", args: []string{"prepared-outputs", failedRun}, code: exitUsage,
			want: "jerichoci: prepared outputs not found for run `" + failedRun + "`\n"},
		{name: "missing recorded prepared outputs",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "runs", stagedRun, "prepared-outputs.json"))
			},
			args: []string{"prepared-outputs", stagedRun, "--json"}, code: exitUsage,
			want: "jerichoci: prepared outputs not found for run `" + stagedRun + "`\n"},
		{name: "bad prepared outputs",
			setup: func(t *testing.T, root string) {
				os.WriteFile(filepath.Join(root, "runs", stagedRun, "prepared-outputs.json"), []byte(`{"outputs": []}`), 0o644)
			},
			args: []string{"prepared-outputs", stagedRun}, code: exitUsage,
			want: "jerichoci: decode $STATE/runs/" + stagedRun + "/prepared-outputs.json: prepared outputs:"},
		{name: "bad run.json in list",
			setup: func(t *testing.T, root string) {
				os.WriteFile(filepath.Join(root, "runs", noRecordRun, "run.json"), []byte("{"), 0o644)
			},
			args: []string{"list"}, code: exitUsage, want: "$STATE/runs/" + noRecordRun + "/run.json"},
		{name: "unknown staged target", args: []string{"staged-linux-target-info", "nope"}, code: exitUsage,
			want: "jerichoci: unsupported staged Linux Rust target `nope`\n"},
		{name: "unstaged target", args: []string{"staged-linux-target-info", "apple_host_sanity", "--json"}, code: exitUsage,
			want: "jerichoci: unsupported staged Linux Rust target `apple_host_sanity`\n"},
		{name: "gc negative", args: []string{"gc", "--keep-runs", "-1"}, code: exitUsage, want: "--keep-runs: expected a number >= 0, got -1"},
		{name: "status without run", args: []string{"status"}, code: exitUsage, want: "expected one RUN_ID, got 0 arguments"},
	})
}

// TestGlobalStateRoot: --state-root before the command is every command's
// default; the command's own flag wins; PIKACI_STATE_ROOT loses to both.
func TestGlobalStateRoot(t *testing.T) {
	root := fixtureState(t)
	want := stagedRun + " pre-merge-pika-rust passed\n"
	env := map[string]string{"PIKACI_STATE_ROOT": t.TempDir()}
	for _, args := range [][]string{
		{"--state-root", root, "status", stagedRun},
		{"--state-root=" + root, "status", stagedRun},
		{"-state-root", root, "status", stagedRun},
		{"--state-root", t.TempDir(), "status", stagedRun, "--state-root", root},
		{"status", stagedRun, "--state-root", root},
	} {
		out, errs, code := runCLIEnv(t, env, args...)
		if code != exitOK || !strings.HasPrefix(out, want) {
			t.Errorf("%q: exit %d\n%s%s", args, code, out, errs)
		}
	}
	// The older runs commands take it too.
	out, errs, code := runCLIEnv(t, env, "--state-root", root, "runs", "list")
	if code != exitOK || !strings.Contains(out, stagedRun) {
		t.Errorf("runs list: exit %d\n%s%s", code, out, errs)
	}
	// Without it, PIKACI_STATE_ROOT is used.
	out, _, code = runCLIEnv(t, map[string]string{"PIKACI_STATE_ROOT": root}, "status", stagedRun)
	if code != exitOK || !strings.HasPrefix(out, want) {
		t.Errorf("PIKACI_STATE_ROOT: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--state-root"}, {"--state-root="}, {"--state-root", ""}} {
		_, errs, code := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(errs, "--state-root") {
			t.Errorf("%q: exit %d\n%s", args, code, errs)
		}
	}
}

func TestPikaciCommandsHelp(t *testing.T) {
	top, _, _ := runCLI(t, "--help")
	for _, name := range []string{"status", "logs", "list", "gc", "prepared-outputs", "staged-linux-target-info"} {
		if !strings.Contains(top, "\n  "+name+" ") {
			t.Errorf("jerichoci --help lacks %s:\n%s", name, top)
		}
		out, errs, code := runCLI(t, name, "--help")
		if code != exitOK || !strings.HasPrefix(out, "usage: jerichoci "+name+" ") || errs != "" {
			t.Errorf("%s --help: exit %d\n%s%s", name, code, out, errs)
		}
	}
}
