package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
)

// TestServeRefusesUnsandboxedNix: with --allow-staged-builds, serve does
// not start on a Nix that would build a branch's flake unsandboxed and as
// root (the old single-user nix-up configuration), and says which
// settings; exit 2 as for other configuration errors. The nix on PATH is
// a stand-in printing that configuration (run as the eval user when the
// test is root: its directory is open to every user).
func TestServeRefusesUnsandboxedNix(t *testing.T) {
	if os.Geteuid() == 0 {
		// As root, serve looks up the eval user before it asks nix.
		testenv.Needs(t, "the flake evaluation user jerichoci-nix (scripts/nix-up)")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
case "$*" in
*"store ping"*) exit 0;;
*"config show"*) echo "error: 'config' is not a recognised command" >&2; exit 1;;
*show-config*) printf '%s' '{"sandbox":{"value":false},"sandbox-fallback":{"value":true},"build-users-group":{"value":""}}';;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "nix"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir) // exec.LookPath reads the process's PATH
	_, stderr, code := runCLIEnv(t, map[string]string{}, "serve", "--state-root", t.TempDir(), "--allow-staged-builds", "--http-listen", "")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
	}
	for _, want := range []string{"--allow-staged-builds: ", "sandbox = false builds unsandboxed", "sandbox-fallback = true", `build-users-group = "" builds as the daemon's user, root`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}
