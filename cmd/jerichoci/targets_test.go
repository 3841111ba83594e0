package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/targets"
)

const catalogFixtures = "../../testdata/fixtures/catalog"

func TestCatalogCommandsUsage(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string // substring; "" = must be empty
		stderr     string // substring; "" = must be empty
		stdoutMust bool
	}{
		{[]string{"targets"}, exitUsage, "", "jerichoci targets: missing command", false},
		{[]string{"targets", "--help"}, exitOK, "usage: jerichoci targets COMMAND", "", true},
		{[]string{"targets", "help"}, exitOK, "show     show one target", "", true},
		{[]string{"targets", "frob"}, exitUsage, "", `jerichoci targets: unknown command "frob"`, false},
		{[]string{"targets", "list", "--help"}, exitOK, "usage: jerichoci targets list [--catalog FILE | --daemon [nats flags]] [--json]", "", true},
		{[]string{"targets", "list", "-h"}, exitOK, "-catalog FILE", "", true},
		{[]string{"targets", "list", "--bogus"}, exitUsage, "", "flag provided but not defined: -bogus", false},
		{[]string{"targets", "list", "extra"}, exitUsage, "", `jerichoci targets list: unexpected argument "extra"`, false},
		{[]string{"targets", "show"}, exitUsage, "", "jerichoci targets show: missing target id or lane title", false},
		{[]string{"targets", "show", "a", "b"}, exitUsage, "", `jerichoci targets show: unexpected argument "b"`, false},
		{[]string{"targets", "show", "nope"}, exitUsage, "", "jerichoci: unknown job `nope`\n", false},
		{[]string{"targets", "show", "tart-beachhead"}, exitUsage, "", "jerichoci: unknown job `tart-beachhead`\n", false},
		{[]string{"targets", "show", "--help"}, exitOK, "usage: jerichoci targets show [--catalog FILE] [--json] ID|LANE", "", true},
		{[]string{"lanes"}, exitUsage, "", "jerichoci lanes: missing command", false},
		{[]string{"lanes", "-h"}, exitOK, "select   print the titles", "", true},
		{[]string{"lanes", "frob"}, exitUsage, "", `jerichoci lanes: unknown command "frob"`, false},
		{[]string{"lanes", "list", "--help"}, exitOK, "usage: jerichoci lanes list", "", true},
		{[]string{"lanes", "list", "--json=maybe"}, exitUsage, "", `invalid boolean value "maybe" for -json`, false},
		{[]string{"lanes", "list", "x"}, exitUsage, "", `jerichoci lanes list: unexpected argument "x"`, false},
		{[]string{"lanes", "select", "--help"}, exitOK, "--changed-from", "", true},
		{[]string{"lanes", "select", "--changed", ""}, exitUsage, "", `invalid value "" for flag -changed: empty path`, false},
		{[]string{"lanes", "select", "--changed"}, exitUsage, "", "flag needs an argument: -changed", false},
		{[]string{"lanes", "select", "--", " "}, exitUsage, "", `jerichoci lanes select: argument " ": empty path`, false},
		{[]string{"lanes", "select", "--changed-from", "/nonexistent/changed.txt"}, exitUsage, "", "jerichoci: --changed-from: open /nonexistent/changed.txt: no such file or directory", false},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := runCLIEnv(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if tc.stdoutMust {
				if !strings.Contains(stdout, tc.stdout) {
					t.Errorf("stdout = %q, want it to contain %q", stdout, tc.stdout)
				}
			} else if stdout != "" {
				t.Errorf("stdout = %q, want empty", stdout)
			}
			// A subcommand's --help also goes to stderr: cli.parse (main.go)
			// prints the usage again after the flag package did.
			helpFlag := len(tc.args) > 2 && tc.code == exitOK && strings.HasPrefix(tc.args[len(tc.args)-1], "-")
			if tc.stderr == "" {
				if stderr != "" && !helpFlag {
					t.Errorf("stderr = %q, want empty", stderr)
				}
			} else if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tc.stderr)
			}
		})
	}
}

func TestTargetsList(t *testing.T) {
	stdout, stderr, code := runCLIEnv(t, nil, "targets", "list")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	all := targets.Builtin().Targets()
	if len(lines) != len(all)+1 || len(all) != 33 {
		t.Fatalf("%d lines for %d targets:\n%s", len(lines), len(all), stdout)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "TARGET JOBS DESCRIPTION" {
		t.Errorf("header = %q", lines[0])
	}
	for i, tg := range all {
		f := strings.Fields(lines[i+1])
		if len(f) < 3 || f[0] != tg.ID || f[1] != itoa(len(tg.Jobs)) || strings.Join(f[2:], " ") != tg.Description {
			t.Errorf("row %d = %q, want %s %d %s", i, lines[i+1], tg.ID, len(tg.Jobs), tg.Description)
		}
	}

	stdout, _, code = runCLIEnv(t, nil, "targets", "list", "--json")
	var rows []struct {
		ID     string `json:"id"`
		Jobs   int    `json:"jobs"`
		Lane   string `json:"lane"`
		Source string `json:"source"`
	}
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != exitOK {
		t.Fatalf("--json: %v, code %d", err, code)
	}
	if len(rows) != 33 || rows[7].ID != "pre-merge-pikachat-rust" || rows[7].Jobs != 10 || rows[7].Lane != "check-pikachat" || rows[7].Source != "built-in" {
		t.Errorf("--json rows = %d, [7] = %+v", len(rows), rows[7])
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestTargetsShow(t *testing.T) {
	tests := []struct {
		args []string
		want []string // lines that must appear
	}{
		{[]string{"pre-merge-pika-followup"}, []string{
			"target       pre-merge-pika-followup",
			"description  Run the VM-backed non-Rust follow-up checks from the pre-merge pika lane",
			"lane         check-pika-followup (trigger branch, concurrency group staged-linux:pre-merge-pika-followup)",
			"source       built-in",
			"filters      24",
			"  flake.nix",
			"jobs         6",
			"job pikachat-build",
			"  timeout      1800s",
			"  command      /staged/linux-rust/workspace-build/bin/run-pika-followup-pikachat-build",
			"  runtime      incus, guest role pikaci-runner, instance type auto",
			"  placement    remote_ssh (executor remote_linux_vm)",
			"  staged       prepare node prefix pika-followup-linux-rust, snapshot profile followup",
			"               outputs ci.x86_64-linux.pikaFollowupWorkspaceDeps, ci.x86_64-linux.pikaFollowupWorkspaceBuild",
			"               prepared for pika follow-up staged Linux lane",
			"job pika-actionlint",
			"  timeout      600s",
		}},
		{[]string{"check-apple-host-sanity"}, []string{ // by lane title
			"target       apple_host_sanity",
			"lane         check-apple-host-sanity (trigger branch, concurrency group apple-host)",
			"  command      bash --noprofile --norc -lc './scripts/pikaci-apple-remote.sh run --just-recipe apple-host-sanity'",
			"  runtime      host_process",
			"  placement    local (executor host_local)",
			"  staged       false",
		}},
		{[]string{"android-sdk-probe"}, []string{
			"lane         none (runs only when asked for)",
			"filters      0",
			"  timeout      3600s",
			"  run as root  true",
			"  writable     true",
		}},
		{[]string{"nightly_pika"}, []string{
			"lane         nightly-pika (trigger nightly, concurrency group none)",
			"  timeout      14400s",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.args[0], func(t *testing.T) {
			stdout, stderr, code := runCLIEnv(t, nil, append([]string{"targets", "show"}, tc.args...)...)
			if code != exitOK || stderr != "" {
				t.Fatalf("code %d, stderr %q", code, stderr)
			}
			lines := strings.Split(stdout, "\n")
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					if l == w {
						found = true
					}
				}
				if !found {
					t.Errorf("missing line %q in:\n%s", w, stdout)
				}
			}
		})
	}
}

func TestTargetsShowJSON(t *testing.T) {
	// Flags may follow the id.
	stdout, stderr, code := runCLIEnv(t, nil, "targets", "show", "pre-merge-agent-contracts", "--json")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	var got struct {
		ID               string   `json:"id"`
		Lane             string   `json:"lane"`
		Trigger          string   `json:"trigger"`
		ConcurrencyGroup string   `json:"concurrency_group"`
		Filters          []string `json:"filters"`
		Source           string   `json:"source"`
		Jobs             []struct {
			ID              string `json:"id"`
			TimeoutSecs     int    `json:"timeout_secs"`
			CompiledCommand string `json:"compiled_command"`
			Staged          bool   `json:"staged"`
			Command         struct {
				Kind    string `json:"kind"`
				Wrapper string `json:"wrapper"`
			} `json:"command"`
			Runtime struct {
				Kind  string `json:"kind"`
				Incus struct {
					GuestRole string `json:"guest_role"`
				} `json:"incus"`
			} `json:"runtime"`
		} `json:"jobs"`
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode: %v\n%s", err, stdout)
	}
	if got.ID != "pre-merge-agent-contracts" || got.Lane != "check-agent-contracts" || got.Trigger != "branch" ||
		got.ConcurrencyGroup != "staged-linux:pre-merge-agent-contracts" || len(got.Filters) != 31 || got.Source != "built-in" || len(got.Jobs) != 3 {
		t.Fatalf("got %+v", got)
	}
	j := got.Jobs[0]
	wrapper := "/staged/linux-rust/workspace-build/bin/run-pika-cloud-unit-tests"
	if j.ID != "pika-cloud-unit" || j.TimeoutSecs != 1800 || j.CompiledCommand != wrapper || j.Command.Wrapper != wrapper ||
		j.Command.Kind != "staged" || !j.Staged || j.Runtime.Kind != "incus" || j.Runtime.Incus.GuestRole != "pikaci-runner" {
		t.Errorf("job 0 = %+v", j)
	}
}

// TestCatalogSelection: --catalog wins over $JERICHOCI_CATALOG, which wins
// over ./jerichoci.lanes.json; bad files fail with exit 2 and name the file.
func TestCatalogSelection(t *testing.T) {
	valid := filepath.Join(catalogFixtures, "valid-project.json")
	invalid := filepath.Join(catalogFixtures, "invalid-timeout.json")
	standalone := filepath.Join(catalogFixtures, "valid-standalone.json")
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		code     int
		contains string // in stdout (ok) or stderr (failure)
	}{
		{"flag", nil, []string{"--catalog", valid}, exitOK, `"id": "demo",`},
		{"env", map[string]string{envCatalog: valid}, nil, exitOK, `"id": "demo",`},
		{"empty env is unset", map[string]string{envCatalog: "  "}, nil, exitOK, `"id": "rmp-init-smoke-ci",`},
		{"flag wins over env", map[string]string{envCatalog: invalid}, []string{"--catalog", standalone}, exitOK, `"id": "only",`},
		{"bad env file", map[string]string{envCatalog: invalid}, nil, exitUsage,
			invalid + `: targets[2] ("demo-pass"): jobs[0] ("echo"): field ` + "`timeout_secs`" + `: must be > 0, got 0`},
		{"missing file", nil, []string{"--catalog", "/nonexistent/x.json"}, exitUsage, "jerichoci: read catalog: open /nonexistent/x.json: no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLIEnv(t, tc.env, append([]string{"targets", "list", "--json"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("code = %d, want %d; stderr %q", code, tc.code, stderr)
			}
			where := stdout
			if code != exitOK {
				where = stderr
			}
			if !strings.Contains(where, tc.contains) {
				t.Errorf("output does not contain %q:\n%s", tc.contains, where)
			}
		})
	}
}

func TestCatalogFromWorkingDirectory(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(catalogFixtures, "valid-standalone.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, targets.DefaultFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	stdout, stderr, code := runCLIEnv(t, nil, "lanes", "list")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	want := "LANE        TARGET  TRIGGER  JOBS  CONCURRENCY GROUP\ncheck-only  only    branch   2     -\n"
	if stdout != want {
		t.Errorf("lanes list =\n%s\nwant\n%s", stdout, want)
	}
}
