package lanes

import (
	_ "embed"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"jerichoci/targets"
)

// contractJSON is the original's list of lanes (pika-lanes.json, copied
// verbatim: docs/CATALOG.md, "The built-in catalog").
//
//go:embed pika-lanes.json
var contractJSON []byte

type contractLane struct {
	Lane             string   `json:"lane"`
	TargetID         string   `json:"target_id"`
	Runtime          string   `json:"runtime"`
	Trigger          string   `json:"trigger"`
	ConcurrencyGroup *string  `json:"concurrency_group"`
	PathFilters      []string `json:"path_filters"`
	TimeoutSecs      uint64   `json:"timeout_secs"`
	Command          string   `json:"command"`
	Description      string   `json:"description"`
}

type contract struct {
	About               string         `json:"about"`
	LaneDefinitionPaths []string       `json:"lane_definition_paths"`
	Lanes               []contractLane `json:"lanes"`
}

func loadContract(t *testing.T) contract {
	t.Helper()
	var c contract
	dec := json.NewDecoder(strings.NewReader(string(contractJSON)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("pika-lanes.json: %v", err)
	}
	return c
}

// TestBuiltinMatchesContract: every lane of pika-lanes.json with its target,
// trigger, group, runtime, filters and (host lanes) command, timeout and
// description, and no other lane. (pika-lanes.json lists fixture and rmp
// before the Apple lanes; the catalog order, which selection keeps, is
// the original's forge order and is checked in TestBuiltinLaneShape.)
func TestBuiltinMatchesContract(t *testing.T) {
	c := loadContract(t)
	s := Builtin()
	if n := len(s.All()); n != len(c.Lanes) {
		t.Errorf("%d lanes, pika-lanes.json has %d", n, len(c.Lanes))
	}
	for _, want := range c.Lanes {
		l, ok := s.Lookup(want.Lane)
		if !ok {
			t.Errorf("lane %s missing", want.Lane)
			continue
		}
		group := ""
		if want.ConcurrencyGroup != nil {
			group = *want.ConcurrencyGroup
		}
		if l.TargetID != want.TargetID || string(l.Trigger) != want.Trigger || l.ConcurrencyGroup != group || l.Runtime != want.Runtime {
			t.Errorf("%s = %q %q %q %q, want %+v", want.Lane, l.TargetID, l.Trigger, l.ConcurrencyGroup, l.Runtime, want)
		}
		if !reflect.DeepEqual(l.PathFilters, want.PathFilters) {
			t.Errorf("%s: path filters =\n%q\nwant\n%q", want.Lane, l.PathFilters, want.PathFilters)
		}
		wantPaths := []string{}
		if want.Trigger == "branch" {
			wantPaths = append(slices.Clone(c.LaneDefinitionPaths), want.PathFilters...)
		}
		if !reflect.DeepEqual(l.Paths, wantPaths) {
			t.Errorf("%s: paths = %q, want %q", want.Lane, l.Paths, wantPaths)
		}
		if want.Command != "" {
			tg, err := targets.Builtin().Lookup(want.TargetID)
			if err != nil {
				t.Fatal(err)
			}
			j := tg.Jobs[0]
			if len(tg.Jobs) != 1 || j.ID != want.TargetID || j.Command.Command != want.Command ||
				j.TimeoutSecs != want.TimeoutSecs || j.Description != want.Description || tg.Description != want.Description {
				t.Errorf("%s: host job = %+v, want %+v", want.Lane, j, want)
			}
		}
		if wantCmd := []string{"nix", "run", ".#pikaci", "--", "run", want.TargetID}; !reflect.DeepEqual(l.Command, wantCmd) {
			t.Errorf("%s: command = %q", want.Lane, l.Command)
		}
	}
}

func TestBuiltinLaneShape(t *testing.T) {
	s := Builtin()
	titles := func(ls []Lane) []string {
		out := []string{}
		for _, l := range ls {
			out = append(out, l.Title)
		}
		return out
	}
	// The original's branch lane order.
	wantBranch := []string{"check-agent-contracts", "check-pika-rust", "check-notifications", "check-pikachat",
		"check-pikachat-typescript", "check-pikachat-openclaw-e2e", "check-pika-followup", "check-apple-host-sanity",
		"check-apple-desktop-compile", "check-apple-ios-compile", "check-fixture", "check-rmp"}
	if got := titles(s.Branch()); !reflect.DeepEqual(got, wantBranch) {
		t.Errorf("branch lanes = %q", got)
	}
	wantNightly := []string{"nightly-linux", "nightly-pika", "nightly-pikachat", "nightly-pika-ui-android", "nightly-apple-host-bundle"}
	if got := titles(s.Nightly()); !reflect.DeepEqual(got, wantNightly) {
		t.Errorf("nightly lanes = %q", got)
	}
	jobs := map[string]int{"check-agent-contracts": 3, "check-pika-rust": 2, "check-notifications": 1, "check-pikachat": 10,
		"check-pikachat-typescript": 1, "check-pikachat-openclaw-e2e": 1, "check-pika-followup": 6, "check-fixture": 2,
		"check-rmp": 1, "check-apple-host-sanity": 1, "nightly-pika": 1}
	for title, n := range jobs {
		l, ok := s.Lookup(title)
		if !ok || l.Jobs != n {
			t.Errorf("Lookup(%s) = %d jobs, %v; want %d", title, l.Jobs, ok, n)
		}
	}
	if _, ok := s.Lookup("pre-merge-pika-rust"); ok {
		t.Error("Lookup by target id succeeded; lanes are looked up by title")
	}
}

func TestSelect(t *testing.T) {
	all := []string{"check-agent-contracts", "check-pika-rust", "check-notifications", "check-pikachat",
		"check-pikachat-typescript", "check-pikachat-openclaw-e2e", "check-pika-followup", "check-apple-host-sanity",
		"check-apple-desktop-compile", "check-apple-ios-compile", "check-fixture", "check-rmp"}
	pikaci := []string{"check-agent-contracts", "check-notifications", "check-pikachat", "check-pikachat-typescript",
		"check-pikachat-openclaw-e2e", "check-fixture"}
	tests := []struct {
		name    string
		changed []string
		want    []string
	}{
		// The original's forge_lanes.rs tests.
		{"docs only (original's example)", []string{"docs/testing/ci-selectors.md"}, []string{"check-pika-rust", "check-pika-followup", "check-fixture"}},
		{"rust core", []string{"rust/src/lib.rs"}, []string{"check-agent-contracts", "check-pika-rust", "check-pikachat",
			"check-pika-followup", "check-apple-host-sanity", "check-apple-desktop-compile", "check-apple-ios-compile", "check-fixture"}},
		{"catalog edit selects all", []string{"crates/pikaci/src/targets.rs"}, all},
		{"lane definition edit selects all", []string{"crates/pikaci/src/forge_lanes.rs"}, all},
		{"pikachat-claude test (original's example)", []string{"pikachat-claude/src/access.test.ts"}, []string{"check-pikachat-typescript"}},
		{"pikachat-claude source", []string{"pikachat-claude/src/channel-runtime.ts"}, []string{"check-pikachat-typescript"}},
		{"pikachat-claude package.json", []string{"pikachat-claude/package.json"}, []string{"check-pikachat-typescript"}},
		// More, derived from the filter lists.
		{"empty selects all branch lanes", nil, all},
		{"empty slice selects all", []string{}, all},
		{"other file under crates/pikaci", []string{"crates/pikaci/README.md"}, pikaci},
		{"unlisted crate manifest: real glob crates/**/Cargo.toml", []string{"crates/new-crate/Cargo.toml"},
			[]string{"check-apple-desktop-compile", "check-apple-ios-compile"}},
		{"unlisted crate source", []string{"crates/new-crate/src/lib.rs"}, nil},
		{"rmp cli and typescript, catalog order", []string{"crates/rmp-cli/src/main.rs", "pikachat-claude/tsconfig.json"},
			[]string{"check-pikachat-typescript", "check-rmp"}},
		{"any script", []string{"scripts/anything.sh"}, []string{"check-pika-rust", "check-pika-followup"}},
		{"apple env", []string{".github/pikaci-apple.env"}, []string{"check-pika-rust", "check-pika-followup",
			"check-apple-host-sanity", "check-apple-desktop-compile", "check-apple-ios-compile"}},
		{"unrelated", []string{"README.md"}, nil},
		{"pikachat-claude other dir", []string{"pikachat-claude/test/x.ts"}, nil},
		{"no leading-slash matching", []string{"/rust/src/lib.rs"}, nil},
		{"dir itself is not under dir/**", []string{"rust"}, nil},
		{"nightly script only", []string{"scripts/forge-nightly-pika-ui-android.sh"}, []string{"check-agent-contracts", "check-pika-rust",
			"check-notifications", "check-pikachat", "check-pikachat-openclaw-e2e", "check-pika-followup", "check-fixture", "check-rmp"}},
	}
	s := Builtin()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := []string{}
			for _, l := range s.Select(tc.changed) {
				got = append(got, l.Title)
			}
			want := tc.want
			if want == nil {
				want = []string{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Select(%q) =\n%q\nwant\n%q", tc.changed, got, want)
			}
		})
	}
}

// concrete turns a pattern into a path it must match.
func concrete(p string) string {
	p = strings.ReplaceAll(p, "**", "deep/er")
	return strings.ReplaceAll(p, "*", "x")
}

// TestEveryFilterSelectsItsLane: for every branch lane and every pattern,
// a file the pattern names selects that lane; and a lane is selected
// exactly when one of its filters (or definition paths) matches.
func TestEveryFilterSelectsItsLane(t *testing.T) {
	s := Builtin()
	for _, l := range s.Branch() {
		for _, p := range l.Paths {
			path := concrete(p)
			selected := s.Select([]string{path})
			if !slices.ContainsFunc(selected, func(x Lane) bool { return x.Title == l.Title }) {
				t.Errorf("%s: %q (from %q) does not select it", l.Title, path, p)
			}
			for _, x := range s.Branch() {
				in := slices.ContainsFunc(selected, func(y Lane) bool { return y.Title == x.Title })
				if in != x.Matches(path) {
					t.Errorf("%q: lane %s selected=%v but Matches=%v", path, x.Title, in, x.Matches(path))
				}
			}
		}
	}
}

func TestNightlyNeverSelected(t *testing.T) {
	job := `{"id": "j", "timeout_secs": 5, "command": {"kind": "host_shell", "command": "true"}, "runtime": {"kind": "host_process"}}`
	parse := func(defPaths string) *Set {
		t.Helper()
		c, err := targets.Parse("local.json", []byte(`{"schema_version": 1, "include_builtin": false, "lane_definition_paths": [`+defPaths+`], "targets": [
		{"id": "n", "lane": "nightly-n", "trigger": "nightly", "filters": ["src/**"], "jobs": [`+job+`]},
		{"id": "b", "lane": "check-b", "trigger": "branch", "filters": ["src/**"], "jobs": [`+job+`]},
		{"id": "free", "lane": "check-free", "trigger": "branch", "jobs": [`+job+`]},
		{"id": "plain", "jobs": [`+job+`]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return FromCatalog(c)
	}
	plain, withDef := parse(""), parse(`"ci.json"`)
	sets := map[string]*Set{"built-in": Builtin(), "local": plain, "local with definition paths": withDef}
	for name, s := range sets {
		for _, changed := range [][]string{nil, {"src/a.go"}, {"crates/pikaci/src/targets.rs"}, {"ci.json"}, {"x"}} {
			for _, l := range s.Select(changed) {
				if l.Trigger != targets.TriggerBranch {
					t.Errorf("%s: Select(%q) chose %s lane %s", name, changed, l.Trigger, l.Title)
				}
			}
		}
	}
	n, ok := plain.Lookup("nightly-n")
	if !ok || len(n.Paths) != 0 || len(n.PathFilters) != 0 || n.Runtime != "host_process" {
		t.Errorf("nightly lane = %+v", n)
	}
	if _, ok := plain.Lookup("plain"); ok {
		t.Error("a target without a trigger became a lane")
	}
	tests := []struct {
		set     *Set
		changed string
		want    []string
	}{
		// check-free has no paths at all, so any change selects it.
		{plain, "src/a.go", []string{"check-b", "check-free"}},
		{plain, "x", []string{"check-free"}},
		{plain, "ci.json", []string{"check-free"}},
		// With definition paths, check-free's paths are just ci.json.
		{withDef, "src/a.go", []string{"check-b"}},
		{withDef, "x", []string{}},
		{withDef, "ci.json", []string{"check-b", "check-free"}},
	}
	for _, tc := range tests {
		got := []string{}
		for _, l := range tc.set.Select([]string{tc.changed}) {
			got = append(got, l.Title)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Select(%q) = %q, want %q", tc.changed, got, tc.want)
		}
	}
}

func TestRuntimeLabel(t *testing.T) {
	job := func(kind, extra string) string {
		return `{"id": "` + kind + `", "timeout_secs": 5, "command": ` + extra + `, "runtime": {"kind": "incus", "incus": {"guest_role": "managed-openclaw"}}}`
	}
	c, err := targets.Parse("l.json", []byte(`{"schema_version": 1, "targets": [
		{"id": "mixed", "lane": "check-mixed", "trigger": "branch", "jobs": [`+job("s", `{"kind": "staged", "wrapper": "/w"}`)+`, `+job("p", `{"kind": "shell", "command": "true"}`)+`]},
		{"id": "staged", "lane": "check-staged", "trigger": "branch", "jobs": [`+job("s", `{"kind": "staged", "wrapper": "/w"}`)+`]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	s := FromCatalog(c)
	for title, want := range map[string]string{
		"check-mixed":  "incus (guest role managed-openclaw)",
		"check-staged": "incus (staged, guest role managed-openclaw)",
	} {
		if l, _ := s.Lookup(title); l.Runtime != want {
			t.Errorf("%s runtime = %q, want %q", title, l.Runtime, want)
		}
	}
}
