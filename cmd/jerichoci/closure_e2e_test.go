package main

// The Nix store a staged guest sees (issue #20, guest isolation): only the
// closure of its own staged outputs, on the real incusd and the host's Nix.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"jerichoci/model"
	"jerichoci/nixbuild"
)

// closureCatalog adds a target on the fixture's other lane (prefix
// fixture-linux-rust) to the fixture's catalog.
const closureCatalog = `{"schema_version":1,"targets":[{"id":"closure-other-lane","description":"A staged job of the fixture lane",
 "jobs":[{"id":"other-lane-job","description":"Staged job on the fixture outputs","timeout_secs":120,
  "command":{"kind":"staged","wrapper":"/staged/linux-rust/workspace-build/bin/run-pika-actionlint"},
  "runtime":{"kind":"incus","incus":{"guest_role":"pikaci-runner"}},
  "staged_linux":{"prepare_node_prefix":"fixture-linux-rust","prepare_description":"fixture staged Linux lane","snapshot_profile":"rust",
   "workspace_deps_output":"ci.x86_64-linux.fixtureWorkspaceDeps","workspace_build_output":"ci.x86_64-linux.fixtureWorkspaceBuild"}}]}]}`

// listingSource is the staged fixture whose wrappers also list the
// guest's /nix/store between two marker lines.
func listingSource(t *testing.T) string {
	t.Helper()
	src := stagedSource(t)
	flake := filepath.Join(src, "flake.nix")
	b, err := os.ReadFile(flake)
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "        cat ${d}/lib/marker\n"
	if !strings.Contains(string(b), anchor) {
		t.Fatalf("the fixture's flake.nix lacks %q", anchor)
	}
	patched := strings.Replace(string(b), anchor, anchor+"        echo nix-store-begin; ls -1a /nix/store; echo nix-store-end\n", 1)
	if err := os.WriteFile(flake, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// guestStore is the listing of /nix/store the wrapper printed in a job's
// guest.log, without . and ..
func guestStore(t *testing.T, guestLog string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(guestLog, "nix-store-begin\n")
	listing, _, ok2 := strings.Cut(rest, "nix-store-end\n")
	if !ok || !ok2 {
		t.Fatalf("guest.log has no /nix/store listing:\n%s", guestLog)
	}
	var names []string
	for _, n := range strings.Split(strings.TrimSpace(listing), "\n") {
		if n != "." && n != ".." && n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// realized returns the store paths a run's staged outputs were realized at.
func realized(t *testing.T, r e2eRun) []string {
	t.Helper()
	var outs model.PreparedOutputsRecord
	b := readFile(t, filepath.Join(r.stateRoot, "runs", r.rec.RunID, "prepared-outputs.json"))
	if err := json.Unmarshal([]byte(b), &outs); err != nil || len(outs.Outputs) != 2 {
		t.Fatalf("prepared outputs = %+v, %v", outs, err)
	}
	var paths []string
	for _, o := range outs.Outputs {
		paths = append(paths, o.RealizedPath)
	}
	return paths
}

// baseNames are the names of store paths below /nix/store, sorted.
func baseNames(paths []string) []string {
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	slices.Sort(names)
	return names
}

func TestE2EStagedGuestSeesOnlyItsClosure(t *testing.T) {
	cl := requireIncus(t)
	requireNix(t)
	state := t.TempDir()
	catalog := filepath.Join(t.TempDir(), "closure.lanes.json")
	if err := os.WriteFile(catalog, []byte(closureCatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	nix := &nixbuild.Builder{}

	// Another lane, of another source, is built and run first: its
	// outputs are in the host's store when the job under test runs.
	otherSrc := listingSource(t)
	if err := os.WriteFile(filepath.Join(otherSrc, "jerichoci.lanes.json"), []byte(closureCatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	other := runWith(t, cl, catalog, otherSrc, state, nil, "closure-other-lane")
	if other.code != exitOK || other.rec.Status != model.StatusPassed {
		t.Fatalf("other lane: exit %d, run %s\nstdout:\n%s\nstderr:\n%s", other.code, other.rec.Status, other.stdout, other.stderr)
	}
	otherOutputs := realized(t, other)

	// A store path of nobody's closure: a file the test adds to the store.
	unrelatedFile := filepath.Join(t.TempDir(), "closure-test-unrelated")
	if err := os.WriteFile(unrelatedFile, []byte(t.Name()+" "+state+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-store", "--add", unrelatedFile).Output()
	if err != nil {
		t.Fatalf("nix-store --add: %v", err)
	}
	unrelated := strings.TrimSpace(string(out))
	if !strings.HasPrefix(unrelated, "/nix/store/") {
		t.Fatalf("nix-store --add printed %q", unrelated)
	}
	t.Cleanup(func() { exec.Command("nix-store", "--delete", unrelated).Run() })

	src := listingSource(t)
	r := runIn(t, cl, src, state, nil, "pika-actionlint")
	if r.code != exitOK || r.rec.Status != model.StatusPassed {
		t.Fatalf("exit %d, run %s\nstdout:\n%s\nstderr:\n%s", r.code, r.rec.Status, r.stdout, r.stderr)
	}
	j := jobByID(t, r.rec, "pika-actionlint")
	guest := readFile(t, j.GuestLogPath)
	hello := strings.TrimSpace(readFile(t, filepath.Join(src, "src", "hello.txt")))
	// The wrapper ran from its payload and read a store path of its closure.
	for _, want := range []string{"wrapper run-pika-actionlint in /workspace/snapshot",
		"deps of pikaFollowup built from " + hello + "\ndeps of pikaFollowup built from " + hello, "staged wrapper passed"} {
		if !strings.Contains(guest, want) {
			t.Errorf("guest.log lacks %q:\n%s", want, guest)
		}
	}

	for _, c := range []struct {
		name  string
		run   e2eRun
		job   string
		alien []string // store paths its guest must not see
	}{
		{"pika-actionlint", r, "pika-actionlint", append([]string{unrelated}, otherOutputs...)},
		{"other lane", other, "other-lane-job", realized(t, r)},
	} {
		outputs := realized(t, c.run)
		closure, err := nix.Closure(t.Context(), outputs, &strings.Builder{})
		if err != nil {
			t.Fatal(err)
		}
		if len(closure) < len(outputs) {
			t.Fatalf("%s: closure %q of %q", c.name, closure, outputs)
		}
		seen := guestStore(t, readFile(t, jobByID(t, c.run.rec, c.job).GuestLogPath))
		if want := baseNames(closure); !slices.Equal(seen, want) {
			t.Errorf("%s: the guest's /nix/store holds\n%s\nwant exactly the closure of its outputs\n%s", c.name, strings.Join(seen, "\n"), strings.Join(want, "\n"))
		}
		for _, a := range c.alien {
			if slices.Contains(seen, filepath.Base(a)) {
				t.Errorf("%s: the guest sees %s", c.name, a)
			}
		}
		host := readFile(t, jobByID(t, c.run.rec, c.job).HostLogPath)
		if !strings.Contains(host, "[pikaci] the guest sees the Nix store closure of its staged outputs: ") {
			t.Errorf("%s: host.log lacks the closure line:\n%s", c.name, host)
		}
	}
	// The host's store holds all of them: the guest saw less than it.
	for _, p := range append([]string{unrelated}, otherOutputs...) {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("the host's store lacks %s: %v", p, err)
		}
	}
}
