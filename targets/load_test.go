package targets

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"jerichoci/model"
)

var update = flag.Bool("update", false, "rewrite the expected-error files of testdata/fixtures/catalog")

const fixtures = "../testdata/fixtures/catalog"

// parseProject parses a fixture under its base name and merges it over the
// built-in catalog when it asks to be, as LoadProject does.
func parseProject(t *testing.T, file string) (*Catalog, error) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(filepath.Base(file), data)
	if err != nil || !c.IncludesBuiltin() {
		return c, err
	}
	return Builtin().Merge(c)
}

// TestInvalidFixtures checks every invalid-*.json against its expected
// errors in invalid-*.json.err (regenerate with -update).
func TestInvalidFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtures, "invalid-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := parseProject(t, f)
			if err == nil {
				t.Fatal("parse succeeded, want errors")
			}
			got := err.Error() + "\n"
			golden := f + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./targets -update)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
			for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
				if !strings.HasPrefix(line, filepath.Base(f)+": ") {
					t.Errorf("error line does not name the file: %q", line)
				}
			}
		})
	}
}

func TestBriefExampleError(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(fixtures, "invalid-timeout.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("jerichoci.lanes.json", data)
	want := `jerichoci.lanes.json: targets[2] ("demo-pass"): jobs[0] ("echo"): field ` + "`timeout_secs`" + `: must be > 0, got 0`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error = %v, want %s", err, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "timeout_secs" || fe.Entry != `targets[2] ("demo-pass"): jobs[0] ("echo")` {
		t.Errorf("errors.As FieldError = %+v", fe)
	}
}

func TestManyErrorsReportedAtOnce(t *testing.T) {
	_, err := parseProject(t, filepath.Join(fixtures, "invalid-many.json"))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	// Each of these problems must be among the reported ones.
	for _, want := range []string{
		`field ` + "`colour`" + ` is not known`,
		`targets[0] ("t1"): field ` + "`trigger`" + `: must be "branch" or "nightly"`,
		`targets[0] ("t1"): field ` + "`filters[1]`" + `: must be relative`,
		`targets[0] ("t1"): field ` + "`filters[2]`" + `: invalid pattern "a**b"`,
		`targets[0] ("t1"): field ` + "`filters[3]`" + `: duplicate filter "src/**"`,
		`targets[0] ("t1"): field ` + "`filters[4]`" + `: must be a non-empty path pattern`,
		`jobs[0] ("j1"): field ` + "`timeout_secs`" + `: expected a whole number of seconds, got "30"`,
		`jobs[0] ("j1"): field ` + "`command.command`" + `: must be a non-empty string for kind "shell"`,
		`jobs[0] ("j1"): field ` + "`runtime.incus.guest_role`" + `: expected ` + "`managed-openclaw` or `pikaci-runner`" + `, got " pikaci-runner"`,
		`jobs[1] ("j2"): field ` + "`timeout_secs`" + `: expected a whole number of seconds, got 1.5`,
		`jobs[1] ("j2"): field ` + "`command.kind`" + `: must be one of`,
		`jobs[1] ("j2"): field ` + "`runtime.kind`" + `: tart (macOS) runtimes are not supported`,
		`jobs[2] ("j3"): field ` + "`runtime.incus.instance_type`" + `: must be "auto", "container" or "virtual-machine", got "vm"`,
		`jobs[3] ("j4"): field ` + "`command.wrapper`" + `: is not used by kind "shell"`,
		`jobs[3] ("j4"): field ` + "`runtime.incus`" + `: only runtime kind "incus" takes it`,
		`jobs[4] ("j5"): field ` + "`command.wrapper`" + `: must be an absolute path`,
		`jobs[4] ("j5"): field ` + "`placement`" + `: must be "remote_ssh"`,
		`jobs[4] ("j5"): field ` + "`executor`" + `: must be "remote_linux_vm"`,
		`jobs[4] ("j5"): field ` + "`staged`" + `: must be true for command kind "staged"`,
		`jobs[5] ("j1"): field ` + "`staged_linux`" + `: only staged jobs`,
		`jobs[5] ("j1"): field ` + "`staged_linux.prepare_node_prefix`" + ` is missing`,
		`jobs[5] ("j1"): field ` + "`staged_linux.snapshot_profile`" + `: must be "rust" or "followup", got "tiny"`,
		`jobs[6] ("bad id!"): field ` + "`timeout_secs`" + ` appears more than once`,
		`jobs[6] ("bad id!"): field ` + "`id`" + `: expected 1 to 128 letters`,
		`jobs[6] ("bad id!"): field ` + "`command`" + `: expected an object with ` + "`kind`" + `, got "ls"`,
		`jobs[6] ("bad id!"): field ` + "`timeot_secs`" + ` is not known`,
		`targets[1] ("t2"): field ` + "`lane`" + `: a lane title needs a ` + "`trigger`",
		`targets[1] ("t2"): field ` + "`concurrency_group`" + `: must be non-empty`,
		`targets[1] ("t2"): field ` + "`jobs`" + `: must hold at least one job`,
		`targets[2] ("t1"): field ` + "`id`" + `: duplicate target id; targets[0] has it too`,
		`targets[3] ("t3"): field ` + "`lane`" + `: duplicate lane title "check-dup"; targets[2] has it too`,
		`targets[4] ("t4"): field ` + "`lane`" + `: is required with trigger "branch"`,
		`targets[5]: expected a target object, got a string ("not-a-target")`,
	} {
		found := false
		for _, l := range lines {
			if strings.Contains(l, want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("missing problem %q in:\n%s", want, err)
		}
	}
	if !strings.Contains(err.Error(), `jobs[5] ("j1"): field `+"`id`"+`: duplicate job id; jobs[0] has it too`) {
		t.Error("duplicate job id among invalid jobs not reported")
	}
}

func TestParseErrorsInline(t *testing.T) {
	job := `{"id": "j", "timeout_secs": 5, "command": {"kind": "shell", "command": "true"}, "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}`
	tests := []struct {
		name string
		doc  string
		want string // the whole error text
	}{
		{"syntax", "{\n  \"schema_version\": 1,\n  \"targets\": [}\n", `f.json: invalid JSON at line 3, column 15: invalid character '}' looking for beginning of value`},
		{"not an object", `[]`, `f.json: expected a JSON object with ` + "`schema_version` and `targets`" + `, got an array ([])`},
		{"no schema", `{"targets": [{"id": "t", "jobs": [` + job + `]}]}`, `f.json: field ` + "`schema_version`" + ` is missing: expected 1`},
		{"schema 2", `{"schema_version": 2, "targets": [{"id": "t", "jobs": [` + job + `]}]}`, `f.json: field ` + "`schema_version`" + `: must be 1, got 2`},
		{"schema string", `{"schema_version": "1", "targets": [{"id": "t", "jobs": [` + job + `]}]}`, `f.json: field ` + "`schema_version`" + `: must be 1, got "1"`},
		{"no targets", `{"schema_version": 1}`, `f.json: field ` + "`targets`" + ` is missing: expected a non-empty array of targets`},
		{"empty targets", `{"schema_version": 1, "targets": []}`, `f.json: field ` + "`targets`" + `: must hold at least one target`},
		{"targets object", `{"schema_version": 1, "targets": {}}`, `f.json: field ` + "`targets`" + `: expected a non-empty array of targets, got {}`},
		{"include_builtin type", `{"schema_version": 1, "include_builtin": "no", "targets": [{"id": "t", "jobs": [` + job + `]}]}`, `f.json: field ` + "`include_builtin`" + `: expected true or false, got "no"`},
		{"bad definition path", `{"schema_version": 1, "lane_definition_paths": ["ci/[x"], "targets": [{"id": "t", "jobs": [` + job + `]}]}`, `f.json: field ` + "`lane_definition_paths[0]`" + `: invalid pattern "ci/[x": unclosed ` + "`[`" + ` (at offset 3)`},
		{"definition path type", `{"schema_version": 1, "lane_definition_paths": [1], "targets": [{"id": "t", "jobs": [` + job + `]}]}`, `f.json: field ` + "`lane_definition_paths[0]`" + `: expected a string, got 1`},
		{"missing id", `{"schema_version": 1, "targets": [{"jobs": [` + job + `]}]}`, `f.json: targets[0]: field ` + "`id`" + ` is missing: expected ` + nameExpected},
		{"missing jobs", `{"schema_version": 1, "targets": [{"id": "t"}]}`, `f.json: targets[0] ("t"): field ` + "`jobs`" + ` is missing: expected a non-empty array of jobs`},
		{"group without trigger", `{"schema_version": 1, "targets": [{"id": "t", "concurrency_group": "g", "jobs": [` + job + `]}]}`, `f.json: targets[0] ("t"): field ` + "`concurrency_group`" + `: only lanes have a concurrency group; set ` + "`trigger`" + ` or drop it`},
		{"negative timeout", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5`, `"timeout_secs": -5`, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`timeout_secs`" + `: must be > 0, got -5`},
		{"missing timeout", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5,`, ``, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`timeout_secs`" + ` is missing: expected a whole number of seconds > 0`},
		{"null timeout is missing", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5`, `"timeout_secs": null`, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`timeout_secs`" + ` is missing: expected a whole number of seconds > 0`},
		{"missing runtime", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [{"id": "j", "timeout_secs": 5, "command": {"kind": "shell", "command": "true"}}]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`runtime`" + ` is missing: expected an object with "kind": "incus" or "host_process"`},
		{"incus without incus", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [{"id": "j", "timeout_secs": 5, "command": {"kind": "shell", "command": "true"}, "runtime": {"kind": "incus"}}]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`runtime.incus`" + ` is missing: expected an object with ` + "`guest_role`"},
		{"missing guest role", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [{"id": "j", "timeout_secs": 5, "command": {"kind": "shell", "command": "true"}, "runtime": {"kind": "incus", "incus": {}}}]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`runtime.incus.guest_role`" + ` is missing: expected "pikaci-runner" for CI jobs, or "managed-openclaw"`},
		{"shell on host", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [{"id": "j", "timeout_secs": 5, "command": {"kind": "shell", "command": "true"}, "runtime": {"kind": "host_process"}}]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`command.kind`" + `: kind "shell" runs in an Incus guest; it needs runtime kind "incus", got "host_process" (use kind "host_shell" for host jobs)`},
		{"run_as_root mismatch", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5`, `"timeout_secs": 5, "run_as_root": true`, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`run_as_root`" + `: must be false for command kind "shell" (or be left out), got true`},
		{"cargo exact needs test", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [{"id": "j", "timeout_secs": 5, "command": {"kind": "cargo_exact_test", "package": "p"}, "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`command.test`" + `: must be a non-empty string for kind "cargo_exact_test"`},
		{"command unknown field", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [{"id": "j", "timeout_secs": 5, "command": {"kind": "shell", "command": "true", "cwd": "/"}, "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`command.cwd`" + ` is not known (value "/"): expected one of "command", "filter", "kind", "package", "test", "wrapper"`},
		{"duplicate job id", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [` + job + `, ` + job + `]}]}`, `f.json: targets[0] ("t"): jobs[1] ("j"): field ` + "`id`" + `: duplicate job id; jobs[0] has it too`},
		{"empty prepare_description", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [` + stagedJob(`"prepare_description": " ",`) + `]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`staged_linux.prepare_description`" + `: must be non-empty`},
		{"prepare_description type", `{"schema_version": 1, "targets": [{"id": "t", "jobs": [` + stagedJob(`"prepare_description": 7,`) + `]}]}`, `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`staged_linux.prepare_description`" + `: expected a non-empty string, got 7`},
		{"secret_env bad name", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5`, `"timeout_secs": 5, "secret_env": ["OK_NAME", "bad-name"]`, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`secret_env[1]`" + `: expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got "bad-name"`},
		{"secret_env reserved", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5`, `"timeout_secs": 5, "secret_env": ["HOME"]`, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`secret_env[0]`" + `: "HOME" is set by the guest runner for every job; a secret cannot replace it`},
		{"secret_env twice", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5`, `"timeout_secs": 5, "secret_env": ["A", "A"]`, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`secret_env[1]`" + `: "A" is named twice (secret_env[0] too)`},
		{"secret_env not an array", strings.Replace(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+job+`]}]}`, `"timeout_secs": 5`, `"timeout_secs": 5, "secret_env": "A"`, 1), `f.json: targets[0] ("t"): jobs[0] ("j"): field ` + "`secret_env`" + `: expected an array of environment variable names, got "A"`},
		{"duplicate key at top", `{"schema_version": 1, "schema_version": 1, "targets": [{"id": "t", "jobs": [` + job + `]}]}`, `f.json: field ` + "`schema_version`" + ` appears more than once`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("f.json", []byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse = %d targets, want error %s", c.Len(), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Parse error =\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}

// stagedJob is a staged job whose staged_linux object starts with extra.
func stagedJob(extra string) string {
	return `{"id": "j", "timeout_secs": 5, "command": {"kind": "staged", "wrapper": "/staged/linux-rust/workspace-build/bin/run-j"},
		"runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}, "staged_linux": {` + extra + `
		"prepare_node_prefix": "p", "snapshot_profile": "rust", "workspace_deps_output": "ci.x86_64-linux.d", "workspace_build_output": "ci.x86_64-linux.b"}}`
}

// TestPrepareDescriptionIsOptional: staged_linux without it parses (empty),
// with it keeps the text.
func TestPrepareDescriptionIsOptional(t *testing.T) {
	for extra, want := range map[string]string{"": "", `"prepare_description": "p staged Linux lane",`: "p staged Linux lane"} {
		c, err := Parse("f.json", []byte(`{"schema_version": 1, "targets": [{"id": "t", "jobs": [`+stagedJob(extra)+`]}]}`))
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if got := c.Targets()[0].Jobs[0].StagedLinux.PrepareDescription; got != want {
			t.Errorf("%q: PrepareDescription = %q, want %q", extra, got, want)
		}
	}
}

func TestValidFixtures(t *testing.T) {
	builtinLen := Builtin().Len()
	tests := []struct {
		file    string
		wantLen int      // targets in the effective catalog
		newIDs  []string // targets that come from the file
	}{
		{"valid-minimal.json", builtinLen + 1, []string{"demo-pass"}},
		{"valid-project.json", builtinLen + 2, []string{"pre-merge-rmp", "demo", "demo-nightly"}},
		{"valid-standalone.json", 1, []string{"only"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(fixtures, tc.file)
			c, err := LoadProject(path)
			if err != nil {
				t.Fatalf("LoadProject(%s): %v", path, err)
			}
			if c.Len() != tc.wantLen {
				t.Errorf("Len = %d, want %d", c.Len(), tc.wantLen)
			}
			for _, id := range tc.newIDs {
				tg, err := c.Lookup(id)
				if err != nil {
					t.Fatalf("Lookup(%s): %v", id, err)
				}
				if tg.Source != path {
					t.Errorf("%s: Source = %q, want %q", id, tg.Source, path)
				}
			}
		})
	}
}

func TestValidProjectDetails(t *testing.T) {
	c, err := LoadProject(filepath.Join(fixtures, "valid-project.json"))
	if err != nil {
		t.Fatal(err)
	}
	rmp, _ := c.Lookup("pre-merge-rmp")
	if len(rmp.Jobs) != 1 || rmp.Jobs[0].ID != "rmp-unit" || rmp.ConcurrencyGroup != "rmp" {
		t.Errorf("pre-merge-rmp not replaced: %+v", rmp)
	}
	if got := rmp.LaneDefinitionPaths; !reflect.DeepEqual(got, []string{"jerichoci.lanes.json"}) {
		t.Errorf("LaneDefinitionPaths = %q", got)
	}
	if got := rmp.Jobs[0].Runtime.Incus.InstanceType; got != model.InstanceContainer {
		t.Errorf("instance type = %q", got)
	}
	ids := []string{}
	for _, tg := range c.Targets() {
		ids = append(ids, tg.ID)
	}
	// Replaced in place (the built-in position), new ones appended in file order.
	if ids[len(ids)-2] != "demo" || ids[len(ids)-1] != "demo-nightly" {
		t.Errorf("new targets not appended: tail %q", ids[len(ids)-3:])
	}
	builtinIDs := []string{}
	for _, tg := range Builtin().Targets() {
		builtinIDs = append(builtinIDs, tg.ID)
	}
	if !reflect.DeepEqual(ids[:len(builtinIDs)], builtinIDs) {
		t.Errorf("built-in order changed by the merge")
	}
	demo, _ := c.Lookup("demo")
	want := []Job{
		{ID: "unit", Description: "Unit tests", TimeoutSecs: 300,
			Command: model.JobCommand{Kind: model.CmdCargoFilteredTests, Package: "demo", Filter: "unit::"},
			Runtime: model.IncusRuntimeFor(model.RolePikaciRunner), Placement: model.PlacementRemoteSSH, Executor: model.ExecutorRemoteLinuxVM},
		{ID: "root-probe", TimeoutSecs: 45, Command: model.ShellAsRoot("id -u"),
			Runtime: model.IncusRuntimeFor(model.RolePikaciRunner), Placement: model.PlacementRemoteSSH, Executor: model.ExecutorRemoteLinuxVM, RunAsRoot: true},
	}
	if !reflect.DeepEqual(demo.Jobs, want) {
		t.Errorf("demo jobs =\n%+v\nwant\n%+v", demo.Jobs, want)
	}
	nightly, _ := c.LookupLane("nightly-demo")
	if j := nightly.Jobs[0]; j.Placement != model.PlacementLocal || j.Executor != model.ExecutorHostLocal || j.Runtime.Kind != model.RuntimeHostProcess {
		t.Errorf("host job = %+v", j)
	}
}

func TestLoadErrorsNameThePath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
	bad := filepath.Join(fixtures, "invalid-timeout.json")
	if _, err := LoadProject(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": targets[2]") {
		t.Errorf("LoadProject(bad) = %v", err)
	}
	if _, err := LoadProject(filepath.Join(fixtures, "invalid-merge-lane.json")); err == nil ||
		!strings.Contains(err.Error(), `field `+"`lane`"+`: lane title "check-pika-rust" is already used by target "pre-merge-pika-rust" (built-in)`) {
		t.Errorf("LoadProject(lane clash) = %v", err)
	}
}

// TestBuiltinRoundTrip re-encodes the built-in catalog with the JSON tags of
// Target and Job and parses it back: the file shape and the types agree.
func TestBuiltinRoundTrip(t *testing.T) {
	b := Builtin()
	doc := map[string]any{
		"schema_version":        SchemaVersion,
		"lane_definition_paths": b.Targets()[0].LaneDefinitionPaths,
		"targets":               b.Targets(),
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(BuiltinSource, data)
	if err != nil {
		t.Fatalf("re-parse: %v", err)
	}
	if !reflect.DeepEqual(again.Targets(), b.Targets()) {
		t.Error("round trip changed the catalog")
	}
}

func TestSecretEnvParsed(t *testing.T) {
	doc := `{"schema_version": 1, "targets": [{"id": "t", "jobs": [{"id": "j", "timeout_secs": 5, "secret_env": ["API_TOKEN", "_B2"],
		"command": {"kind": "shell", "command": "true"}, "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}]}`
	c, err := Parse("f.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Targets()[0].Jobs[0].SecretEnv, ","); got != "API_TOKEN,_B2" {
		t.Errorf("SecretEnv = %s", got)
	}
}
