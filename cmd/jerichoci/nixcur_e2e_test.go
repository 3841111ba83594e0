package main

// The staged end-to-end test once more with the current Nix
// (scripts/nix-current-up: Debian 13's Nix 2.26, a client of nix-up's
// Nix 2.8 daemon), chosen with JERICHOCI_NIX, and a host-local job whose
// dev shell that Nix renders (docs/INCUS.md, "Nix versions").

import (
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
	"jerichoci/model"
)

func TestE2EStagedCurrentNix(t *testing.T) {
	cl := requireIncus(t)
	requireNix(t) // the daemon and the eval user are nix-up's
	nix, version := testenv.CurrentNix(t)
	t.Logf("%s: %s", nix, version)
	env := map[string]string{envNix: nix}

	host := stagedBuiltinTarget(t, cl, env)
	// Every nix call of the prepare nodes was the current Nix's.
	for _, want := range []string{
		"[pikaci] " + nix + " --extra-experimental-features 'nix-command flakes' path-info --store daemon ",
		"[pikaci] " + nix + " --extra-experimental-features 'nix-command flakes' build --store daemon ",
	} {
		if !strings.Contains(host, want) {
			t.Errorf("host.log lacks %q:\n%s", want, host)
		}
	}
	if strings.Contains(host, "[pikaci] nix ") {
		t.Errorf("host.log shows a nix call with the nix on PATH:\n%s", host)
	}

	src, state := stagedSource(t), t.TempDir()
	r := runIn(t, cl, src, state, env, "host-pass")
	j := jobByID(t, r.rec, "host-pass")
	if r.code != exitOK || j.Status != model.StatusPassed {
		t.Fatalf("host-pass: exit %d, job %s\nstderr:\n%s", r.code, j.Status, r.stderr)
	}
	if h := readFile(t, j.HostLogPath); !strings.Contains(h, "dev shell: staged-fixture\n") {
		t.Errorf("host.log of host-pass:\n%s", h)
	}
	// Nix 2.26's print-dev-env runs the hook as `eval "${shellHook:-}"`,
	// 2.8's as `eval "$shellHook"`: this script is the current Nix's.
	script := readFile(t, filepath.Join(state, "cache", "host-local", "target-host-pass", "dev-env", "env.sh"))
	if !strings.Contains(script, "\neval \"${shellHook:-}\"\n") {
		t.Errorf("the cached dev shell is not the current Nix's print-dev-env:\n%s", script)
	}
}
