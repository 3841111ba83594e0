package hostlocal

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
)

// TestDevEnvOnRealOutput reads what Nix 2.8 and Nix 2.26 really printed
// for the dev shell calls on testdata/fixtures/staged-repo
// (testdata/fixtures/nix/README.md): the shell's derivation path from
// `nix eval --raw` is the fingerprint, the script from `nix
// print-dev-env` declares the BASH jobs run under, and bash sourcing it
// gets the shell's variables.
func TestDevEnvOnRealOutput(t *testing.T) {
	for _, tc := range []struct {
		version string
		// hook is how the version's script runs the shellHook.
		hook string
	}{
		{"2.8.0", `eval "$shellHook"`},
		{"2.26.3", `eval "${shellHook:-}"`},
	} {
		t.Run(tc.version, func(t *testing.T) {
			dir := filepath.Join("..", "..", "testdata", "fixtures", "nix", tc.version)
			if v := strings.TrimSpace(readFile(t, filepath.Join(dir, "version.txt"))); v != "nix (Nix) "+tc.version {
				t.Fatalf("version.txt = %q", v)
			}
			// The same derivation from both versions: the fingerprint does
			// not change with the Nix that computes it.
			if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "eval-drvpath.txt"))); got != "/nix/store/anv56j40g5dx7irgy57m1gw8x5wwqqkj-staged-fixture-shell.drv" {
				t.Errorf("fingerprint = %q", got)
			}
			script := filepath.Join(dir, "print-dev-env.sh")
			b, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "\n"+tc.hook+"\n") {
				t.Errorf("%s lacks %q: not that version's output", script, tc.hook)
			}
			if bash, err := devEnvBash(script, b); bash != "/bin/bash" || err != nil {
				t.Errorf("devEnvBash = %q, %v; want /bin/bash", bash, err)
			}
			m := mode{cached: true, script: script, bash: "/bin/bash"}
			argv, err := m.argv(`printf '%s|%s|%s' "$FIXTURE_DEV_SHELL" "$IN_NIX_SHELL" "$PATH"`)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
			out, err := cmd.Output()
			if want := "staged-fixture|impure|/usr/bin:/bin:/usr/bin:/bin"; string(out) != want || err != nil {
				t.Errorf("the job in the dev shell printed %q, %v; want %q", out, err, want)
			}
		})
	}
}

// TestRealNixCurrent: host-local jobs' dev shells with the current Nix
// (scripts/nix-current-up), run as the worker and as the host-jobs user.
func TestRealNixCurrent(t *testing.T) {
	nix, version := testenv.CurrentNix(t)
	t.Logf("%s: %s", nix, version)
	t.Run("worker", func(t *testing.T) { devShellTwice(t, nix) })
	t.Run("host-jobs user", func(t *testing.T) { isolatedDevShell(t, jobUser(t), nix) })
}
