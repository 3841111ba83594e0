package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CurrentNixEnv names the current Nix's program when it is not where
// scripts/nix-current-up puts it.
const CurrentNixEnv = "JERICHOCI_NIX_CURRENT"

// CurrentNix returns the program of the current Nix that
// scripts/nix-current-up sets up beside the host's Nix 2.8 (a client of
// the same nix-daemon): $JERICHOCI_NIX_CURRENT, else bin/nix under
// JERICHOCI_SETUP_STATE's (default /var/lib/jerichoci) nix-current. A
// missing or broken one ends the test through Missing (a failure under
// CI, whose make test runs nix-current-up). It returns the program and
// what its --version printed.
func CurrentNix(t testing.TB) (prog, version string) {
	t.Helper()
	Needs(t, "the current Nix (scripts/nix-current-up)")
	prog = os.Getenv(CurrentNixEnv)
	if prog == "" {
		state := os.Getenv("JERICHOCI_SETUP_STATE")
		if state == "" {
			state = "/var/lib/jerichoci"
		}
		prog = filepath.Join(state, "nix-current", "bin", "nix")
	}
	out, err := exec.Command(prog, "--version").Output()
	if err != nil {
		Missing(t, "needs the current Nix at %s (sudo scripts/nix-current-up puts Debian 13's nix-bin there; %s names another): %v", prog, CurrentNixEnv, err)
		return "", ""
	}
	return prog, strings.TrimSpace(string(out))
}
