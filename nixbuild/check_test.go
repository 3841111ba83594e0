package nixbuild

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
)

// TestDecodeSettings reads both shapes of the settings JSON (Nix 2.8's
// `show-config --json`, each setting an object with its value; bare
// values) and names each unsafe setting with its value.
func TestDecodeSettings(t *testing.T) {
	wrap := func(sandbox, fallback, group string) string {
		return `{"sandbox":{"aliases":["build-use-sandbox"],"defaultValue":true,"value":` + sandbox + `},` +
			`"sandbox-fallback":{"defaultValue":true,"value":` + fallback + `},` +
			`"build-users-group":{"defaultValue":"","value":` + group + `},"substituters":{"value":[]}}`
	}
	for _, tc := range []struct {
		name, in string
		problems []string // substrings, one a problem, in order
		err      string
	}{
		{"2.8 safe", wrap("true", "false", `"nixbld"`), nil, ""},
		{"2.8 unsandboxed as root (the old nix-up)", wrap("false", "true", `""`),
			[]string{"sandbox = false builds unsandboxed", "sandbox-fallback = true", `build-users-group = "" builds as the daemon's user, root`}, ""},
		{"2.8 relaxed", wrap(`"relaxed"`, "false", `"nixbld"`), []string{"sandbox = relaxed"}, ""},
		{"sandbox as a string", wrap(`"true"`, "false", `"nixbld"`), nil, ""},
		{"fallback on", wrap("true", "true", `"nixbld"`), []string{"sandbox-fallback = true"}, ""},
		{"bare values", `{"sandbox":true,"sandbox-fallback":false,"build-users-group":"nixbld"}`, nil, ""},
		{"bare values unsafe", `{"sandbox":false,"sandbox-fallback":false,"build-users-group":""}`,
			[]string{"sandbox = false", "build-users-group"}, ""},
		{"auto-allocate-uids without a group", `{"sandbox":true,"sandbox-fallback":false,"build-users-group":"","auto-allocate-uids":{"value":true}}`, nil, ""},
		{"auto-allocate-uids off without a group", `{"sandbox":true,"sandbox-fallback":false,"build-users-group":"","auto-allocate-uids":{"value":false}}`,
			[]string{"build-users-group"}, ""},
		{"sandbox missing", `{"sandbox-fallback":false,"build-users-group":"nixbld"}`, nil, "no setting `sandbox`"},
		{"sandbox nonsense", wrap(`"maybe"`, "false", `"nixbld"`), nil, "setting `sandbox` is \"maybe\""},
		{"group not a string", wrap("true", "false", "3"), nil, "setting `build-users-group` is 3"},
		{"fallback missing", `{"sandbox":true,"build-users-group":"nixbld"}`, nil, "no setting `sandbox-fallback`"},
		{"not an object", `[1]`, nil, "want an object of settings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := decodeSettings([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := s.problems()
			if len(got) != len(tc.problems) {
				t.Fatalf("problems = %q, want %d: %q", got, len(tc.problems), tc.problems)
			}
			for i, p := range tc.problems {
				if !strings.Contains(got[i], p) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], p)
				}
			}
		})
	}
}

// TestCheckSandboxedRealNix: the host's Nix as scripts/nix-up sets it up
// (this test runs after it) builds sandboxed, as build users, through a
// daemon that answers.
func TestCheckSandboxedRealNix(t *testing.T) {
	needNix(t)
	if err := (&Builder{}).CheckSandboxed(t.Context()); err != nil {
		t.Fatalf("CheckSandboxed on this host (set up by scripts/nix-up): %v", err)
	}
}

// TestCheckSandboxedRefuses runs CheckSandboxed against a stand-in nix
// that reports an unsafe configuration or a daemon that does not answer.
func TestCheckSandboxedRefuses(t *testing.T) {
	if os.Geteuid() == 0 {
		// As root, the check looks up the eval user before it asks nix.
		testenv.Needs(t, "the flake evaluation user "+DefaultEvalUser+" (scripts/nix-up)")
	}
	for _, tc := range []struct {
		name, script string
		is           error
		want         []string
	}{
		{"old single-user nix-up config", `case "$*" in
*"store ping"*) exit 0;;
*"config show"*) echo "error: 'config' is not a recognised command" >&2; exit 1;;
*show-config*) printf '%s' '{"sandbox":{"value":false},"sandbox-fallback":{"value":true},"build-users-group":{"value":""}}';;
esac`, ErrUnsafeNix, []string{"sandbox = false", "sandbox-fallback = true", `build-users-group = ""`, "/etc/nix/nix.conf"}},
		{"relaxed on a newer nix", `case "$*" in
*"store ping"*) exit 0;;
*"config show"*) printf '%s' '{"sandbox":{"value":"relaxed"},"sandbox-fallback":{"value":false},"build-users-group":{"value":"nixbld"}}';;
*) exit 9;;
esac`, ErrUnsafeNix, []string{"sandbox = relaxed"}},
		{"daemon down", `case "$*" in
*"store ping"*) echo "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused" >&2; exit 1;;
*) exit 9;;
esac`, ErrUnsafeNix, []string{"nix-daemon does not answer", "Connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The stand-in runs as the eval user when the test is root:
			// its directory must be open to that user.
			dir := t.TempDir()
			for _, d := range []string{dir, filepath.Dir(dir)} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			prog := filepath.Join(dir, "nix")
			if err := os.WriteFile(prog, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			err := (&Builder{Program: prog}).CheckSandboxed(t.Context())
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}
