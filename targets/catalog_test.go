package targets

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"jerichoci/model"
)

// originalTargetIDs is ALL_TARGET_IDS of the original's targets.rs: 41 ids.
var originalTargetIDs = []string{
	"tart-beachhead", "pika-cloud-unit", "server-agent-api-tests", "core-agent-nip98-test",
	"agent-contracts-smoke", "pre-merge-agent-contracts", "pre-merge-pika-rust", "pre-merge-notifications",
	"pre-merge-pikachat-rust", "pre-merge-pikachat-typescript", "pre-merge-pikachat-openclaw-e2e",
	"pre-merge-pika-followup", "pika-actionlint", "pika-doc-contracts", "pika-rust-deps-hygiene",
	"pika-core-lib-app-flows-tests", "pika-server-package-tests", "pikachat-package-tests", "pikahut-clippy",
	"pre-merge-pikachat-apple-followup", "apple_host_sanity", "apple_desktop_compile", "apple_ios_compile",
	"nightly_linux", "nightly_pika", "nightly_pikachat", "nightly_pika_ui_android", "nightly_apple_host_bundle",
	"pika-desktop-package-tests", "pre-merge-fixture-rust", "android-sdk-probe", "android-nostr-connect-intent-test",
	"tart-env-probe", "tart-ios-agent-button-state-test", "tart-ios-unit-tests", "tart-ios-ui-test",
	"tart-ios-ui-note-to-self", "tart-desktop-package-tests", "pre-merge-apple-deterministic",
	"pre-merge-rmp", "rmp-init-smoke-ci",
}

// tartTargetIDs are the macOS Tart targets the rewrite leaves out
// (docs/CONTRACTS.md, "The original's catalog").
var tartTargetIDs = []string{
	"tart-beachhead", "tart-env-probe", "tart-ios-agent-button-state-test", "tart-ios-unit-tests",
	"tart-ios-ui-test", "tart-ios-ui-note-to-self", "tart-desktop-package-tests", "pre-merge-apple-deterministic",
}

func ids(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

func TestBuiltinIsTheOriginalMinusTart(t *testing.T) {
	if len(originalTargetIDs) != 41 || len(tartTargetIDs) != 8 {
		t.Fatalf("test data: %d original ids, %d tart ids", len(originalTargetIDs), len(tartTargetIDs))
	}
	want := slices.DeleteFunc(slices.Clone(originalTargetIDs), func(id string) bool { return slices.Contains(tartTargetIDs, id) })
	got := ids(Builtin().Targets())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("built-in ids (in order) =\n%q\nwant\n%q", got, want)
	}
	if len(got) != 33 {
		t.Errorf("built-in has %d targets, want 41 - 8 tart = 33", len(got))
	}
	for _, id := range tartTargetIDs {
		if _, err := Builtin().Lookup(id); err == nil {
			t.Errorf("tart target %s is in the catalog", id)
		}
	}
}

const wrapperDir = "/staged/linux-rust/workspace-build/bin/"

type wantJob struct {
	id      string
	timeout uint64
	wrapper string // file name in wrapperDir
}

// prepareDescriptions are the original's shared prepare descriptions per
// prepare node prefix (crates/pikaci/src/catalog.rs,
// shared_prepare_description).
var prepareDescriptions = map[string]string{
	"pika-core-linux-rust":         "pika_core staged Linux Rust lane",
	"pika-followup-linux-rust":     "pika follow-up staged Linux lane",
	"agent-contracts-linux-rust":   "agent contracts staged Linux Rust lane",
	"notifications-linux-rust":     "notifications staged Linux Rust lane",
	"fixture-linux-rust":           "fixture staged Linux Rust lane",
	"rmp-linux-rust":               "rmp staged Linux Rust lane",
	"pikachat-linux-rust":          "pikachat staged Linux Rust lane",
	"pikachat-openclaw-linux-rust": "pikachat OpenClaw staged Linux lane",
}

// TestPreMergeStagedTargets checks the original's staged pre-merge targets
// (docs/CONTRACTS.md, "The original's catalog").
func TestPreMergeStagedTargets(t *testing.T) {
	tests := []struct {
		lane, id, desc, prefix, x, profile string
		jobs                               []wantJob
	}{
		{"check-agent-contracts", "pre-merge-agent-contracts", "Run the Incus-backed pre-merge agent contracts lane", "agent-contracts-linux-rust", "agentContracts", "rust",
			[]wantJob{{"pika-cloud-unit", 1800, "run-pika-cloud-unit-tests"}, {"server-agent-api-tests", 1800, ""}, {"core-agent-nip98-test", 1800, ""}}},
		{"check-pika-rust", "pre-merge-pika-rust", "Run the VM-backed Rust tests from the pre-merge pika lane", "pika-core-linux-rust", "", "rust",
			[]wantJob{{"pika-core-lib-app-flows-tests", 1800, ""}, {"pika-core-messaging-e2e-tests", 1800, ""}}},
		{"check-notifications", "pre-merge-notifications", "Run the VM-backed Rust tests from the notifications lane", "notifications-linux-rust", "notifications", "rust",
			[]wantJob{{"pika-server-package-tests", 1800, ""}}},
		{"check-pikachat", "pre-merge-pikachat-rust", "Run the VM-backed Rust tests from the pikachat lane", "pikachat-linux-rust", "pikachat", "rust",
			[]wantJob{{"pikachat-package-tests", 1800, ""}, {"pikachat-sidecar-package-tests", 1800, ""}, {"pika-desktop-package-tests", 1800, ""},
				{"pikachat-cli-smoke-local", 1800, ""}, {"pikachat-post-rebase-invalid-event", 1800, ""}, {"pikachat-post-rebase-logout-session", 1800, ""},
				{"openclaw-invite-and-chat", 1800, ""}, {"openclaw-invite-and-chat-rust-bot", 1800, ""}, {"openclaw-invite-and-chat-daemon", 1800, ""},
				{"openclaw-audio-echo", 1800, ""}}},
		{"check-pikachat-typescript", "pre-merge-pikachat-typescript", "Run the VM-backed TypeScript tests from the pikachat lane", "pikachat-linux-rust", "pikachat", "rust",
			[]wantJob{{"pikachat-typescript", 1800, ""}}},
		{"check-pikachat-openclaw-e2e", "pre-merge-pikachat-openclaw-e2e", "Run the VM-backed heavy OpenClaw gateway end-to-end scenario", "pikachat-openclaw-linux-rust", "pikachat", "rust",
			[]wantJob{{"pikachat-openclaw-gateway-e2e", 3600, "run-openclaw-gateway-e2e"}}},
		{"check-pika-followup", "pre-merge-pika-followup", "Run the VM-backed non-Rust follow-up checks from the pre-merge pika lane", "pika-followup-linux-rust", "pikaFollowup", "followup",
			[]wantJob{{"pika-android-test-compile", 3600, ""}, {"pikachat-build", 1800, "run-pika-followup-pikachat-build"}, {"pika-desktop-check", 1800, ""},
				{"pika-actionlint", 600, ""}, {"pika-doc-contracts", 900, ""}, {"pika-rust-deps-hygiene", 900, ""}}},
		{"check-fixture", "pre-merge-fixture-rust", "Run the VM-backed Rust tests from the fixture lane", "fixture-linux-rust", "fixture", "rust",
			[]wantJob{{"pikahut-clippy", 1800, ""}, {"fixture-relay-smoke", 300, ""}}},
		{"check-rmp", "pre-merge-rmp", "Run the VM-backed pre-merge RMP lane", "rmp-linux-rust", "rmp", "rust",
			[]wantJob{{"rmp-init-smoke-ci", 1800, ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			tg, err := Builtin().LookupLane(tc.lane)
			if err != nil {
				t.Fatal(err)
			}
			if tg.ID != tc.id || tg.Description != tc.desc || tg.Trigger != TriggerBranch || tg.ConcurrencyGroup != "staged-linux:"+tc.id {
				t.Errorf("target = %q %q %q %q", tg.ID, tg.Description, tg.Trigger, tg.ConcurrencyGroup)
			}
			if n := len(tg.Filters); n < 11 || n > 43 {
				t.Errorf("%d filters, want 11 to 43", n)
			}
			if !tg.AllStaged() {
				t.Error("AllStaged = false")
			}
			deps, build := "ci.x86_64-linux.workspaceDeps", "ci.x86_64-linux.workspaceBuild"
			if tc.x != "" {
				deps, build = "ci.x86_64-linux."+tc.x+"WorkspaceDeps", "ci.x86_64-linux."+tc.x+"WorkspaceBuild"
			}
			if len(tg.Jobs) != len(tc.jobs) {
				t.Fatalf("%d jobs, want %d", len(tg.Jobs), len(tc.jobs))
			}
			for i, w := range tc.jobs {
				wrapper := w.wrapper
				if wrapper == "" {
					wrapper = "run-" + w.id
				}
				want := Job{
					ID: w.id, Description: tg.Jobs[i].Description, TimeoutSecs: w.timeout,
					Command: model.Staged(wrapperDir + wrapper), Runtime: model.IncusRuntimeFor(model.RolePikaciRunner),
					Placement: model.PlacementRemoteSSH, Executor: model.ExecutorRemoteLinuxVM, Staged: true,
					StagedLinux: &StagedLinux{PrepareNodePrefix: tc.prefix, PrepareDescription: prepareDescriptions[tc.prefix],
						SnapshotProfile: tc.profile, WorkspaceDepsOutput: deps, WorkspaceBuildOutput: build},
				}
				if got := tg.Jobs[i]; !reflect.DeepEqual(got, want) {
					t.Errorf("job %d =\n%s\nwant\n%s", i, dump(got), dump(want))
				}
				if tg.Jobs[i].Description == "" {
					t.Errorf("job %s has no description", w.id)
				}
				cmd, root, err := tg.Jobs[i].Command.Compile()
				if err != nil || cmd != wrapperDir+wrapper || root {
					t.Errorf("Compile = %q %v %v", cmd, root, err)
				}
			}
		})
	}
}

func dump(j Job) string {
	s := fmt.Sprintf("%+v", j)
	if j.StagedLinux != nil {
		s += fmt.Sprintf(" staged_linux=%+v", *j.StagedLinux)
	}
	return s
}

// TestSingleJobTargets: each holds the same-named job, identical to the job
// in its staged target, untriggered and unfiltered.
func TestSingleJobTargets(t *testing.T) {
	c := Builtin()
	source := map[string]string{
		"pika-cloud-unit": "pre-merge-agent-contracts", "server-agent-api-tests": "pre-merge-agent-contracts",
		"core-agent-nip98-test": "pre-merge-agent-contracts", "pika-actionlint": "pre-merge-pika-followup",
		"pika-doc-contracts": "pre-merge-pika-followup", "pika-rust-deps-hygiene": "pre-merge-pika-followup",
		"pika-core-lib-app-flows-tests": "pre-merge-pika-rust", "pika-server-package-tests": "pre-merge-notifications",
		"pikachat-package-tests": "pre-merge-pikachat-rust", "pikahut-clippy": "pre-merge-fixture-rust",
		"pika-desktop-package-tests": "pre-merge-pikachat-rust", "rmp-init-smoke-ci": "pre-merge-rmp",
	}
	for id, from := range source {
		t.Run(id, func(t *testing.T) {
			tg, err := c.Lookup(id)
			if err != nil {
				t.Fatal(err)
			}
			if tg.Trigger != TriggerNone || tg.Lane != "" || len(tg.Filters) != 0 || tg.ConcurrencyGroup != "" {
				t.Errorf("single-job target has lane data: %+v", tg)
			}
			if len(tg.Jobs) != 1 || tg.Jobs[0].ID != id {
				t.Fatalf("jobs = %v", tg.Jobs)
			}
			parent, _ := c.Lookup(from)
			i := slices.IndexFunc(parent.Jobs, func(j Job) bool { return j.ID == id })
			if i < 0 || !reflect.DeepEqual(tg.Jobs[0], parent.Jobs[i]) {
				t.Errorf("job differs from %s's", from)
			}
		})
	}
	smoke, _ := c.Lookup("agent-contracts-smoke")
	contracts, _ := c.Lookup("pre-merge-agent-contracts")
	if !reflect.DeepEqual(smoke.Jobs, contracts.Jobs) || smoke.Trigger != TriggerNone {
		t.Errorf("agent-contracts-smoke = %+v, want the 3 agent-contract jobs, untriggered", smoke)
	}
}

func TestAndroidTargets(t *testing.T) {
	for _, tc := range []struct {
		id      string
		timeout uint64
		tail    string
	}{
		{"android-sdk-probe", 3600, "emulator -list-avds"},
		{"android-nostr-connect-intent-test", 7200, "./tools/android-ui-test-ci"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			tg, err := Builtin().Lookup(tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if len(tg.Jobs) != 1 {
				t.Fatalf("%d jobs", len(tg.Jobs))
			}
			j := tg.Jobs[0]
			if j.ID != tc.id || j.TimeoutSecs != tc.timeout || !j.Writable || !j.RunAsRoot || j.Staged || tg.AllStaged() {
				t.Errorf("job = %+v", j)
			}
			if !reflect.DeepEqual(j.Runtime, model.IncusRuntimeFor(model.RolePikaciRunner)) || j.Placement != model.PlacementRemoteSSH {
				t.Errorf("runtime = %+v %s", j.Runtime, j.Placement)
			}
			cmd, root, err := j.Command.Compile()
			if err != nil || !root || !strings.HasPrefix(cmd, "bash --noprofile --norc -lc 'set -euo pipefail; ") || !strings.HasSuffix(cmd, tc.tail+"'") {
				t.Errorf("Compile = %q %v %v", cmd, root, err)
			}
		})
	}
}

// TestHostLocalTargets checks the original's host-local Apple and nightly
// targets (docs/CONTRACTS.md, "The original's catalog").
func TestHostLocalTargets(t *testing.T) {
	const apple = "./scripts/pikaci-apple-remote.sh run --just-recipe "
	tests := []struct {
		id, lane string
		trigger  Trigger
		group    string
		timeout  uint64
		command  string
		filtered bool
	}{
		{"apple_host_sanity", "check-apple-host-sanity", TriggerBranch, "apple-host", 3600, apple + "apple-host-sanity", true},
		{"apple_desktop_compile", "check-apple-desktop-compile", TriggerBranch, "apple-compile", 3600, apple + "apple-host-desktop-compile", true},
		{"apple_ios_compile", "check-apple-ios-compile", TriggerBranch, "apple-compile", 3600, apple + "apple-host-ios-compile", true},
		{"nightly_linux", "nightly-linux", TriggerNightly, "", 14400, "nix develop .#default -c just rmp_tools::rmp-nightly-linux", false},
		{"nightly_pika", "nightly-pika", TriggerNightly, "", 14400, "nix develop .#default -c just checks::nightly-pika-e2e", false},
		{"nightly_pikachat", "nightly-pikachat", TriggerNightly, "", 14400, "nix develop .#default -c just checks::nightly-pikachat", false},
		{"nightly_pika_ui_android", "nightly-pika-ui-android", TriggerNightly, "nightly-android", 14400, "./scripts/forge-nightly-pika-ui-android.sh", false},
		{"nightly_apple_host_bundle", "nightly-apple-host-bundle", TriggerNightly, "apple-runtime", 14400, apple + "apple-host-bundle", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			tg, err := Builtin().Lookup(tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if tg.Lane != tc.lane || tg.Trigger != tc.trigger || tg.ConcurrencyGroup != tc.group || (len(tg.Filters) > 0) != tc.filtered {
				t.Errorf("target = %q %q %q %d filters", tg.Lane, tg.Trigger, tg.ConcurrencyGroup, len(tg.Filters))
			}
			want := []Job{{ID: tc.id, Description: tg.Description, TimeoutSecs: tc.timeout, Command: model.HostShell(tc.command),
				Runtime: model.HostProcessRuntime(), Placement: model.PlacementLocal, Executor: model.ExecutorHostLocal}}
			if !reflect.DeepEqual(tg.Jobs, want) {
				t.Errorf("jobs =\n%+v\nwant\n%+v", tg.Jobs, want)
			}
		})
	}
}

func TestAppleFollowup(t *testing.T) {
	tg, err := Builtin().Lookup("pre-merge-pikachat-apple-followup")
	if err != nil {
		t.Fatal(err)
	}
	if tg.Trigger != TriggerNone || tg.Lane != "" || len(tg.Filters) == 0 {
		t.Errorf("want untriggered and filtered, got %q %q %d filters", tg.Trigger, tg.Lane, len(tg.Filters))
	}
	want := []string{"pikachat-clippy", "pikachat-sidecar-clippy", "pikachat-ui-e2e-local-desktop", "pikachat-openclaw-channel-behavior"}
	if len(tg.Jobs) != len(want) {
		t.Fatalf("%d jobs", len(tg.Jobs))
	}
	for i, j := range tg.Jobs {
		prefix := "./scripts/apple-host-record-phase pikachat-followup." + want[i] + " "
		if j.ID != want[i] || j.TimeoutSecs != 1800 || j.Command.Kind != model.CmdHostShell ||
			!strings.HasPrefix(j.Command.Command, prefix) || !strings.Contains(j.Command.Command, " -- ") ||
			j.Runtime.Kind != model.RuntimeHostProcess || j.Executor != model.ExecutorHostLocal {
			t.Errorf("job %d = %+v", i, j)
		}
	}
}

// TestEveryJob checks invariants over the whole built-in catalog.
func TestEveryJob(t *testing.T) {
	jobs := 0
	for _, tg := range Builtin().Targets() {
		if tg.Source != BuiltinSource || len(tg.Jobs) == 0 || tg.Description == "" {
			t.Errorf("%s: source %q, %d jobs, description %q", tg.ID, tg.Source, len(tg.Jobs), tg.Description)
		}
		for _, j := range tg.Jobs {
			jobs++
			if _, _, err := j.Command.Compile(); err != nil {
				t.Errorf("%s/%s: %v", tg.ID, j.ID, err)
			}
			if j.Runtime.IsIncus() && (j.Runtime.Incus.GuestRole != model.RolePikaciRunner || j.Placement != model.PlacementRemoteSSH || j.Executor != model.ExecutorRemoteLinuxVM) {
				t.Errorf("%s/%s: Incus job with %+v %s %s", tg.ID, j.ID, *j.Runtime.Incus, j.Placement, j.Executor)
			}
			if j.Staged && (j.Writable || j.StagedLinux == nil) {
				t.Errorf("%s/%s: staged job writable or without staged_linux", tg.ID, j.ID)
			}
			if s := j.StagedLinux; s != nil && s.PrepareDescription != prepareDescriptions[s.PrepareNodePrefix] {
				t.Errorf("%s/%s: prepare_description %q, want the original's %q for prefix %s",
					tg.ID, j.ID, s.PrepareDescription, prepareDescriptions[s.PrepareNodePrefix], s.PrepareNodePrefix)
			}
		}
	}
	if jobs != 56 {
		t.Errorf("%d jobs in all targets, want 56", jobs)
	}
}

func TestLookup(t *testing.T) {
	c := Builtin()
	tests := []struct {
		name    string
		lookup  func(string) (Target, error)
		arg, id string // id "" = unknown
	}{
		{"by id", c.Lookup, "pre-merge-pika-rust", "pre-merge-pika-rust"},
		{"lane title is not an id", c.Lookup, "check-pika-rust", ""},
		{"by lane", c.LookupLane, "check-pika-rust", "pre-merge-pika-rust"},
		{"id is not a lane title", c.LookupLane, "pre-merge-pika-rust", ""},
		{"resolve id", c.Resolve, "nightly_pika", "nightly_pika"},
		{"resolve lane", c.Resolve, "nightly-pika", "nightly_pika"},
		{"resolve unknown", c.Resolve, "nope", ""},
		{"tart is unknown", c.Resolve, "tart-beachhead", ""},
		{"no trimming", c.Lookup, " pre-merge-rmp", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := tc.lookup(tc.arg)
			if tc.id == "" {
				want := "unknown job `" + tc.arg + "`"
				if tc.arg == " pre-merge-rmp" {
					want += "; did you mean `pre-merge-rmp`?"
				}
				if err == nil || err.Error() != want || !errors.Is(err, ErrUnknownTarget) {
					t.Errorf("error = %v, want %s", err, want)
				}
				return
			}
			if err != nil || tg.ID != tc.id {
				t.Errorf("= %q, %v; want %q", tg.ID, err, tc.id)
			}
		})
	}
}

func TestTargetsAreCopies(t *testing.T) {
	c := Builtin()
	tg, _ := c.Lookup("pre-merge-pika-rust")
	tg.Filters[0] = "changed"
	tg.Jobs[0].ID = "changed"
	tg.Jobs[0].StagedLinux.PrepareNodePrefix = "changed"
	tg.Jobs[0].Runtime.Incus.GuestRole = model.RoleManagedOpenclaw
	again, _ := c.Lookup("pre-merge-pika-rust")
	if again.Filters[0] != "Cargo.toml" || again.Jobs[0].ID != "pika-core-lib-app-flows-tests" ||
		again.Jobs[0].StagedLinux.PrepareNodePrefix != "pika-core-linux-rust" || again.Jobs[0].Runtime.Incus.GuestRole != model.RolePikaciRunner {
		t.Error("mutating a looked-up target changed the catalog")
	}
}

func TestMerge(t *testing.T) {
	job := `{"id": "j", "timeout_secs": 5, "command": {"kind": "shell", "command": "true"}, "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}`
	base, err := Parse("base.json", []byte(`{"schema_version": 1, "targets": [
		{"id": "a", "lane": "check-a", "trigger": "branch", "jobs": [`+job+`]},
		{"id": "b", "lane": "check-b", "trigger": "branch", "jobs": [`+job+`]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		over    string // targets of the overlay file
		wantIDs []string
		gone    string // a lane title the merge drops
		wantErr string
	}{
		{"add", `{"id": "c", "jobs": [` + job + `]}`, []string{"a", "b", "c"}, "", ""},
		{"replace in place", `{"id": "a", "description": "new", "jobs": [` + job + `]}`, []string{"a", "b"}, "check-a", ""},
		{"replace keeping the lane", `{"id": "b", "lane": "check-b", "trigger": "nightly", "jobs": [` + job + `]}`, []string{"a", "b"}, "", ""},
		{"take a freed lane title", `{"id": "a", "jobs": [` + job + `]}, {"id": "z", "lane": "check-a", "trigger": "branch", "jobs": [` + job + `]}`, []string{"a", "b", "z"}, "", ""},
		{"lane title clash", `{"id": "c", "jobs": [` + job + `]}, {"id": "d", "lane": "check-b", "trigger": "branch", "jobs": [` + job + `]}`, nil, "",
			`over.json: targets[1] ("d"): field ` + "`lane`" + `: lane title "check-b" is already used by target "b" (base.json)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			over, err := Parse("over.json", []byte(`{"schema_version": 1, "targets": [`+tc.over+`]}`))
			if err != nil {
				t.Fatal(err)
			}
			m, err := base.Merge(over)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Merge error = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(m.Targets()); !reflect.DeepEqual(got, tc.wantIDs) {
				t.Errorf("ids = %q, want %q", got, tc.wantIDs)
			}
			if m.Name() != "base.json + over.json" {
				t.Errorf("Name = %q", m.Name())
			}
			for _, id := range tc.wantIDs {
				tg, _ := m.Lookup(id)
				_, fromOver := over.byID[id]
				if want := map[bool]string{true: "over.json", false: "base.json"}[fromOver]; tg.Source != want {
					t.Errorf("%s: Source = %q, want %q", id, tg.Source, want)
				}
				if tg.Lane != "" {
					if byLane, err := m.LookupLane(tg.Lane); err != nil || byLane.ID != id {
						t.Errorf("LookupLane(%s) = %q, %v", tg.Lane, byLane.ID, err)
					}
				}
			}
			if _, err := m.LookupLane(tc.gone); tc.gone != "" && err == nil {
				t.Errorf("lane %s survived the merge", tc.gone)
			}
		})
	}
}
