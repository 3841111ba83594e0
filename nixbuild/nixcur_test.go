package nixbuild

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
)

// eachNix runs f once with the host's Nix (scripts/nix-up: Debian 12's
// Nix 2.8) and once with the current Nix (scripts/nix-current-up: Debian
// 13's 2.26, a client of the same daemon), each as a subtest.
func eachNix(t *testing.T, f func(t *testing.T, b *Builder)) {
	t.Run("host", func(t *testing.T) {
		needNix(t)
		f(t, &Builder{})
	})
	t.Run("current", func(t *testing.T) {
		prog, version := testenv.CurrentNix(t)
		t.Logf("%s: %s", prog, version)
		f(t, &Builder{Program: prog})
	})
}

// nixFixture reads testdata/fixtures/nix/<version>/<name>: what that Nix
// printed for the call (README.md there says how it was captured).
func nixFixture(t *testing.T, version, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", "nix", version, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodersOnRealOutput runs every decoder of this package on what
// Nix 2.8 and Nix 2.26 really printed for the same calls on the staged
// fixture: the deps output before it was built (path-info: missing), the
// build output after `nix build --json` (path-info: valid), its closure,
// the snapshot added to the store, and the settings.
func TestDecodersOnRealOutput(t *testing.T) {
	for _, tc := range []struct {
		version, missing, built, source, settings string
	}{
		{"2.8.0", "/nix/store/faxlvyx0xczjs5mh39rdjpid5x8hpisq-fixture-workspace-deps",
			"/nix/store/45030x99p13qqpssz3s52nf3w0jx3qyl-fixture-workspace-build",
			"/nix/store/gcwkxd52907ph5qpf0yy2vv2l7wn5pfj-source", "show-config.json"},
		{"2.26.3", "/nix/store/2766p7c7c2j0gzzc975xczcqb1yg08ds-fixture-workspace-deps",
			"/nix/store/vdkpwh5hmyf0li8ggxvphdpb7zwxbgld-fixture-workspace-build",
			"/nix/store/dmq6cp5a344wmk52ljzbb4zhh51ndn6r-source", "config-show.json"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			if v := strings.TrimSpace(string(nixFixture(t, tc.version, "version.txt"))); v != "nix (Nix) "+tc.version {
				t.Fatalf("version.txt = %q: the fixtures are not of Nix %s", v, tc.version)
			}
			path, valid, err := pathInfo(nixFixture(t, tc.version, "path-info-missing.json"))
			if path != tc.missing || valid || err != nil {
				t.Errorf("pathInfo(missing) = %q, %v, %v; want %q, false", path, valid, err, tc.missing)
			}
			path, valid, err = pathInfo(nixFixture(t, tc.version, "path-info-valid.json"))
			if path != tc.built || !valid || err != nil {
				t.Errorf("pathInfo(valid) = %q, %v, %v; want %q, true", path, valid, err, tc.built)
			}
			if got, err := outPath(nixFixture(t, tc.version, "build.json")); got != tc.built || err != nil {
				t.Errorf("outPath(build.json) = %q, %v; want %q", got, err, tc.built)
			}
			got, err := closureLines(nixFixture(t, tc.version, "path-info-recursive.txt"))
			if want := slices.Sorted(slices.Values([]string{tc.missing, tc.built})); !slices.Equal(got, want) || err != nil {
				t.Errorf("closureLines = %q, %v; want %q", got, err, want)
			}
			if got, err := addedPath(nixFixture(t, tc.version, "store-add-path.txt")); got != tc.source || err != nil {
				t.Errorf("addedPath = %q, %v; want %q", got, err, tc.source)
			}
			s, err := decodeSettings(nixFixture(t, tc.version, tc.settings))
			if want := (settings{Sandbox: "true", BuildUsersGroup: "nixbld"}); s != want || err != nil {
				t.Errorf("decodeSettings(%s) = %+v, %v; want %+v (nix-up's nix.conf)", tc.settings, s, err, want)
			}
			if p := s.problems(); len(p) != 0 {
				t.Errorf("problems of nix-up's settings: %q", p)
			}
		})
	}
}

// TestCheckSandboxedCurrentNix: the current Nix reads the settings with
// `nix config show --json` and finds the daemon through the same
// nix.conf as Nix 2.8.
func TestCheckSandboxedCurrentNix(t *testing.T) {
	prog, _ := testenv.CurrentNix(t)
	if err := (&Builder{Program: prog}).CheckSandboxed(t.Context()); err != nil {
		t.Fatalf("CheckSandboxed with %s: %v", prog, err)
	}
}
