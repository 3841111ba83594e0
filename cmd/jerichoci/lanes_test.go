package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"jerichoci/targets"
)

// TestLanesListShowsEveryContractLane: every lane of pika-lanes.json is a row
// of `lanes list` with its target id, trigger, concurrency group and the
// catalog target's job count; there are no other rows.
func TestLanesListShowsEveryContractLane(t *testing.T) {
	data, err := os.ReadFile("../../lanes/pika-lanes.json")
	if err != nil {
		t.Fatal(err)
	}
	var contract struct {
		Lanes []struct {
			Lane             string  `json:"lane"`
			TargetID         string  `json:"target_id"`
			Trigger          string  `json:"trigger"`
			ConcurrencyGroup *string `json:"concurrency_group"`
		} `json:"lanes"`
	}
	if err := json.Unmarshal(data, &contract); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLIEnv(t, nil, "lanes", "list")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "LANE TARGET TRIGGER JOBS CONCURRENCY GROUP" {
		t.Errorf("header = %q", got)
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 5 {
			t.Fatalf("row %q has %d fields", l, len(f))
		}
		rows[f[0]] = f
	}
	if len(rows) != len(contract.Lanes) || len(lines)-1 != len(contract.Lanes) || len(contract.Lanes) != 17 {
		t.Errorf("%d rows, pika-lanes.json has %d lanes", len(lines)-1, len(contract.Lanes))
	}
	for _, want := range contract.Lanes {
		row, ok := rows[want.Lane]
		if !ok {
			t.Errorf("lane %s missing from lanes list", want.Lane)
			continue
		}
		tg, err := targets.Builtin().Lookup(want.TargetID)
		if err != nil {
			t.Fatal(err)
		}
		group := "-"
		if want.ConcurrencyGroup != nil {
			group = *want.ConcurrencyGroup
		}
		if wantRow := []string{want.Lane, want.TargetID, want.Trigger, itoa(len(tg.Jobs)), group}; !reflect.DeepEqual(row, wantRow) {
			t.Errorf("row = %q, want %q", row, wantRow)
		}
	}
	// Branch lanes in the original's order, then nightly lanes.
	wantOrder := []string{"check-agent-contracts", "check-pika-rust", "check-notifications", "check-pikachat",
		"check-pikachat-typescript", "check-pikachat-openclaw-e2e", "check-pika-followup", "check-apple-host-sanity",
		"check-apple-desktop-compile", "check-apple-ios-compile", "check-fixture", "check-rmp",
		"nightly-linux", "nightly-pika", "nightly-pikachat", "nightly-pika-ui-android", "nightly-apple-host-bundle"}
	var order []string
	for _, l := range lines[1:] {
		order = append(order, strings.Fields(l)[0])
	}
	if !reflect.DeepEqual(order, wantOrder) {
		t.Errorf("order = %q", order)
	}
}

func TestLanesListJSON(t *testing.T) {
	stdout, _, code := runCLIEnv(t, nil, "lanes", "list", "--json")
	var ls []laneJSON
	if err := json.Unmarshal([]byte(stdout), &ls); err != nil || code != exitOK {
		t.Fatalf("%v, code %d", err, code)
	}
	if len(ls) != 17 {
		t.Fatalf("%d lanes", len(ls))
	}
	first, last := ls[0], ls[16]
	if first.Lane != "check-agent-contracts" || first.Jobs != 3 || first.ConcurrencyGroup == nil ||
		*first.ConcurrencyGroup != "staged-linux:pre-merge-agent-contracts" || len(first.PathFilters) != 31 ||
		len(first.Paths) != 33 || first.Paths[0] != "crates/pikaci/src/forge_lanes.rs" ||
		!reflect.DeepEqual(first.Command, []string{"nix", "run", ".#pikaci", "--", "run", "pre-merge-agent-contracts"}) {
		t.Errorf("first = %+v", first)
	}
	if last.Lane != "nightly-apple-host-bundle" || last.Trigger != "nightly" || len(last.Paths) != 0 || last.PathFilters == nil {
		t.Errorf("last = %+v", last)
	}
	if ls[12].ConcurrencyGroup != nil || !strings.Contains(stdout, `"concurrency_group": null`) {
		t.Errorf("nightly-linux group = %v, want null", ls[12].ConcurrencyGroup)
	}
}

var allBranchLanes = []string{"check-agent-contracts", "check-pika-rust", "check-notifications", "check-pikachat",
	"check-pikachat-typescript", "check-pikachat-openclaw-e2e", "check-pika-followup", "check-apple-host-sanity",
	"check-apple-desktop-compile", "check-apple-ios-compile", "check-fixture", "check-rmp"}

func TestLanesSelect(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listFile := write("changed.txt", "\n  docs/testing/ci-selectors.md  \r\n\ncrates/rmp-cli/src/main.rs\r\n")
	emptyFile := write("empty.txt", "\n\n")
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  []string
	}{
		{"original's docs example", []string{"--changed", "docs/testing/ci-selectors.md"}, "",
			[]string{"check-pika-rust", "check-pika-followup", "check-fixture"}},
		{"original's typescript example", []string{"--changed", "pikachat-claude/src/access.test.ts"}, "",
			[]string{"check-pikachat-typescript"}},
		{"files as arguments", []string{"pikachat-claude/src/access.test.ts"}, "", []string{"check-pikachat-typescript"}},
		{"repeated --changed, catalog order", []string{"--changed", "crates/rmp-cli/Cargo.toml", "--changed", "pikachat-claude/package.json"}, "",
			[]string{"check-pikachat-typescript", "check-apple-desktop-compile", "check-apple-ios-compile", "check-rmp"}},
		{"catalog definition file selects all", []string{"crates/pikaci/src/targets.rs"}, "", allBranchLanes},
		{"no changed files selects all branch lanes", nil, "", allBranchLanes},
		{"nothing matches", []string{"README.md"}, "", nil},
		{"nightly-only script", []string{"scripts/forge-nightly-pika-ui-android.sh"}, "", []string{"check-agent-contracts", "check-pika-rust",
			"check-notifications", "check-pikachat", "check-pikachat-openclaw-e2e", "check-pika-followup", "check-fixture", "check-rmp"}},
		{"--changed-from file, trimmed, blank lines skipped", []string{"--changed-from", listFile}, "",
			[]string{"check-pika-rust", "check-pika-followup", "check-fixture", "check-rmp"}},
		{"--changed-from stdin", []string{"--changed-from", "-"}, "pikachat-claude/tsconfig.json\n", []string{"check-pikachat-typescript"}},
		{"--changed-from empty file selects all", []string{"--changed-from", emptyFile}, "", allBranchLanes},
		{"all sources combined", []string{"README.md", "--changed", "pikachat-claude/package.json", "--changed-from", "-"}, "crates/rmp-cli/x\n",
			[]string{"check-pikachat-typescript", "check-rmp"}},
		{"after --, dashes are paths", []string{"--", "--changed"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := lanesStdin
			lanesStdin = strings.NewReader(tc.stdin)
			t.Cleanup(func() { lanesStdin = old })
			stdout, stderr, code := runCLIEnv(t, nil, append([]string{"lanes", "select"}, tc.args...)...)
			if code != exitOK || stderr != "" {
				t.Fatalf("code %d, stderr %q", code, stderr)
			}
			got := strings.Fields(stdout)
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("selected =\n%q\nwant\n%q", got, tc.want)
			}
			if len(tc.want) > 0 && stdout != strings.Join(tc.want, "\n")+"\n" {
				t.Errorf("output is not one title per line: %q", stdout)
			}
		})
	}
}

func TestLanesSelectJSONAndLocalCatalog(t *testing.T) {
	catalog := filepath.Join(catalogFixtures, "valid-project.json")
	stdout, stderr, code := runCLIEnv(t, nil, "lanes", "select", "docs/guide.md", "--catalog", catalog, "--json")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	var ls []laneJSON
	if err := json.Unmarshal([]byte(stdout), &ls); err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, l := range ls {
		titles = append(titles, l.Lane)
	}
	// docs/guide.md: the built-in docs/** lanes plus the local check-demo (docs/*.md).
	if want := []string{"check-pika-rust", "check-pika-followup", "check-demo"}; !reflect.DeepEqual(titles, want) {
		t.Errorf("titles = %q, want %q", titles, want)
	}
	// The local file replaced pre-merge-rmp; its definition path selects its lanes.
	stdout, _, _ = runCLIEnv(t, nil, "lanes", "select", "--catalog", catalog, "jerichoci.lanes.json")
	if want := "check-rmp\ncheck-demo\n"; stdout != want {
		t.Errorf("select jerichoci.lanes.json = %q, want %q", stdout, want)
	}
	stdout, _, _ = runCLIEnv(t, nil, "lanes", "select", "--catalog", catalog, "crates/rmp-cli/src/lib.rs")
	if want := "check-rmp\n"; stdout != want {
		t.Errorf("select crates/rmp-cli/src/lib.rs = %q, want %q", stdout, want)
	}
	_, stderr, code = runCLIEnv(t, nil, "lanes", "select", "--catalog", filepath.Join(catalogFixtures, "invalid-merge-lane.json"))
	if code != exitUsage || !strings.Contains(stderr, "invalid-merge-lane.json: targets[0] (\"my-rust\"): field `lane`: lane title \"check-pika-rust\" is already used") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
}
