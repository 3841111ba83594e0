package hostlocal

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// fakeNix writes a nix that records each call's arguments (one per line,
// then "--") to <dir>/calls, prints <dir>/fingerprint for eval and a dev
// environment script for print-dev-env, and fails with <dir>/fail as its
// stderr when that file exists.
func fakeNix(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "nix")
	script := `#!/bin/sh
d=` + model.ShellQuote(dir) + `
{ for a in "$@"; do printf '%s\n' "$a"; done; echo --; } >> "$d/calls"
if [ -e "$d/fail" ]; then cat "$d/fail" >&2; exit 1; fi
case "$3" in
eval) cat "$d/fingerprint" ;;
print-dev-env) printf "unset shellHook\nBASH='/bin/bash'\nexport HL_FROM_NIX=%s\n" "$(cat "$d/fingerprint")" ;;
esac
`
	writeFile(t, p, script)
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// calls returns the fake nix's calls since the last one and forgets them.
func calls(t *testing.T, dir string) [][]string {
	t.Helper()
	p := filepath.Join(dir, "calls")
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	var out [][]string
	var cur []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "--" {
			out, cur = append(out, cur), nil
			continue
		}
		cur = append(cur, l)
	}
	return out
}

func evalCall(snap, shell string) []string {
	return []string{"--extra-experimental-features", "nix-command flakes", "eval", "--raw",
		"path:" + snap + "#devShells." + nixSystem() + "." + shell + ".drvPath"}
}

func printCall(snap, shell string) []string {
	return []string{"--extra-experimental-features", "nix-command flakes", "print-dev-env", "path:" + snap + "#" + shell}
}

func TestCachedNixDevEnv(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	nixDir := filepath.Join(f.root, "fake-nix")
	f.x.Nix = fakeNix(t, nixDir)
	flake := map[string]string{"flake.nix": "{ outputs = _: {}; }"}
	s1, s2, s3 := f.snapshot("s1", flake, "h1"), f.snapshot("s2", flake, "h2"), f.snapshot("s3", flake, "h3")
	for i, step := range []struct {
		snap, shell, fingerprint string
		refresh                  string
		calls                    [][]string
		hash                     string
	}{
		{s1, "", "/nix/store/f1.drv", envRefreshed, [][]string{evalCall(s1, "default"), printCall(s1, "default")}, "h1"},
		{s1, "", "/nix/store/f1.drv", envReused, nil, "h1"},
		{s2, "", "/nix/store/f1.drv", envRevalidated, [][]string{evalCall(s2, "default")}, "h2"},
		{s3, "", "/nix/store/f2.drv", envRefreshed, [][]string{evalCall(s3, "default"), printCall(s3, "default")}, "h3"},
		{s3, "ci", "/nix/store/f3.drv", envRefreshed, [][]string{evalCall(s3, "ci"), printCall(s3, "ci")}, "h3"},
		{s3, "ci", "/nix/store/f3.drv", envReused, nil, "h3"},
	} {
		writeFile(t, filepath.Join(nixDir, "fingerprint"), step.fingerprint)
		f.x.Env = env()
		shell := "default"
		if step.shell != "" {
			f.x.Env, shell = env("PIKACI_HOST_LOCAL_NIX_SHELL", step.shell), step.shell
		}
		j := f.job("nix", step.snap, `printf '%s' "$HL_FROM_NIX" > "$ARTIFACTS/from-nix"`)
		j.JobDir = filepath.Join(f.root, "jobs", "nix", string(rune('a'+i)))
		res, err := f.x.Execute(context.Background(), j)
		if err != nil || res.Status != model.StatusPassed {
			t.Fatalf("step %d: Execute = %+v, %v\n%s", i, res, err, logOf(j))
		}
		if got := calls(t, nixDir); !equalCalls(got, step.calls) {
			t.Fatalf("step %d: nix calls\n%q\nwant\n%q", i, got, step.calls)
		}
		log := logOf(j)
		for _, line := range []string{
			"[pikaci] host-local execution environment: cached nix print-dev-env .#" + shell + "\n",
			"[pikaci] host-local environment " + step.refresh + " in ",
		} {
			if !strings.Contains(log, line) {
				t.Fatalf("step %d: host log lacks %q:\n%s", i, line, log)
			}
		}
		// The command ran in the environment rendered for the shell's
		// fingerprint last refreshed.
		var st devEnvState
		cache := f.cache(j)
		if err := json.Unmarshal([]byte(readFile(t, filepath.Join(cache, "dev-env", "state.json"))), &st); err != nil {
			t.Fatal(err)
		}
		if st.SchemaVersion != 1 || st.Shell != shell || st.ValidatedSourceContentHash == nil || *st.ValidatedSourceContentHash != step.hash {
			t.Fatalf("step %d: state.json = %+v", i, st)
		}
		if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "from-nix")); got != st.ShellFingerprint {
			t.Fatalf("step %d: HL_FROM_NIX = %q, want the env of %q", i, got, st.ShellFingerprint)
		}
	}
}

func equalCalls(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") {
			return false
		}
	}
	return true
}

func TestNixModeChoice(t *testing.T) {
	t.Parallel()
	flake := map[string]string{"flake.nix": "{ outputs = _: {}; }"}
	for _, tc := range []struct {
		name    string
		files   map[string]string
		env     model.LookupEnv
		nix     string // "" keeps the fixture's missing nix
		status  model.RunStatus
		message string // for a failed job: a part of it
		mode    string
	}{
		{name: "no flake", files: nil, env: env(), status: model.StatusPassed, mode: "direct shell"},
		{name: "in a nix shell", files: flake, env: env("IN_NIX_SHELL", ""), status: model.StatusPassed, mode: "direct shell"},
		{name: "flake.nix is a directory", files: map[string]string{"flake.nix/x": ""}, env: env(), status: model.StatusPassed, mode: "direct shell"},
		{name: "missing nix", files: flake, env: env(), status: model.StatusFailed,
			message: "prepare host-local execution environment for job `j`: `nix` is needed for the workspace's flake dev shell (flake.nix, IN_NIX_SHELL unset) but was not found ("},
		{name: "missing nix on PATH", files: flake, env: env(), nix: "jerichoci-no-such-nix", status: model.StatusFailed,
			message: "install Nix (on Debian: `sudo scripts/nix-up`, which installs nix-bin)"},
		{name: "nix fails", files: flake, env: env(), nix: "fail", status: model.StatusFailed,
			message: "prepare host-local execution environment for job `j`: nix eval path:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.x.Env = env()
			switch tc.nix {
			case "":
			case "fail":
				d := filepath.Join(f.root, "fake-nix")
				f.x.Nix = fakeNix(t, d)
				writeFile(t, filepath.Join(d, "fail"), "error: boom\n")
			default:
				f.x.Nix = tc.nix
			}
			f.x.Env = tc.env
			snap := f.snapshot("s", tc.files, "h1")
			j := f.job("j", snap, `touch "$ARTIFACTS/ran"`)
			res, err := f.x.Execute(context.Background(), j)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if res.Status != tc.status {
				t.Fatalf("result = %+v, want %s", res, tc.status)
			}
			ran := exists(filepath.Join(j.JobDir, "artifacts", "ran"))
			if tc.status == model.StatusPassed {
				if !ran || !strings.Contains(logOf(j), "[pikaci] host-local execution environment: "+tc.mode+"\n") {
					t.Fatalf("want the command run in %q:\n%s", tc.mode, logOf(j))
				}
				return
			}
			if ran || res.ExitCode != nil || !strings.Contains(res.Message, tc.message) || !strings.Contains(logOf(j), "[pikaci] "+res.Message+"\n") {
				t.Fatalf("result = %+v (ran %v), want a failure containing %q, also in the host log:\n%s", res, ran, tc.message, logOf(j))
			}
			if !strings.Contains(res.Message, "`nix`") && tc.nix != "fail" {
				t.Fatalf("message %q does not name `nix`", res.Message)
			}
			if tc.nix == "fail" && !strings.HasSuffix(res.Message, "#devShells."+nixSystem()+".default.drvPath failed: error: boom") {
				t.Fatalf("message %q does not end with nix's error", res.Message)
			}
			assertUnlocked(t, f.cache(j))
		})
	}
}

// realFlake is a flake without inputs whose dev shell needs no nixpkgs:
// print-dev-env wants bash as the builder and an outputs attribute.
func realFlake(marker string) string {
	return `{
  outputs = { self }: {
    devShells.` + nixSystem() + `.default = derivation {
      name = "jerichoci-hostlocal-test-shell";
      system = "` + nixSystem() + `";
      builder = "/bin/bash";
      outputs = [ "out" ];
      HL_MARKER = "` + marker + `";
      PATH = "/bin";
      args = [ "-c" "echo > $out" ];
    };
  };
}
`
}

// TestRealNix runs a job in a real flake's dev shell when this host has a
// nix that can build one: the sandboxed multi-user Nix scripts/nix-up
// sets up, offline, with the sandbox's /bin/bash as the builder (PATH set,
// else bash takes the build user's shell, /noshell, for $BASH).
func TestRealNix(t *testing.T) {
	testenv.Needs(t, "nix (scripts/nix-up)")
	// In CI, make test has run scripts/nix-up: a missing or broken nix fails.
	skip := func(format string, a ...any) { t.Helper(); testenv.Missing(t, format, a...) }
	nix, err := exec.LookPath("nix")
	if err != nil {
		skip("no nix on PATH; install it with `sudo scripts/nix-up` to run this test")
	}
	probe := filepath.Join(t.TempDir(), "probe")
	writeFile(t, filepath.Join(probe, "flake.nix"), realFlake("probe"))
	cmd := exec.Command(nix, "--extra-experimental-features", "nix-command flakes", "print-dev-env", "path:"+probe+"#default")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		skip("this host's nix cannot build a dev shell (%v): %s", err, strings.TrimSpace(stderr.String()))
	}
	devShellTwice(t, "")
}

// devShellTwice runs a job in a real flake's dev shell with the nix
// program nix ("" for nix on PATH), then again on the same source: the
// first renders the environment, the second reuses it.
func devShellTwice(t *testing.T, nix string) {
	t.Helper()
	f := newFixture(t)
	f.x.Nix = nix
	snap := f.snapshot("s", map[string]string{"flake.nix": realFlake("from-dev-shell")}, "h1")
	for i, refresh := range []string{envRefreshed, envReused} {
		j := f.job("real", snap, `printf '%s' "$HL_MARKER" > "$ARTIFACTS/marker"`)
		j.JobDir = filepath.Join(f.root, "jobs", string(rune('a'+i)))
		res, err := f.x.Execute(context.Background(), j)
		if err != nil || res.Status != model.StatusPassed {
			t.Fatalf("run %d: Execute = %+v, %v\n%s", i, res, err, logOf(j))
		}
		if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "marker")); got != "from-dev-shell" {
			t.Fatalf("run %d: HL_MARKER = %q, want the dev shell's", i, got)
		}
		if !strings.Contains(logOf(j), "[pikaci] host-local environment "+refresh+" in ") {
			t.Fatalf("run %d: want %q:\n%s", i, refresh, logOf(j))
		}
		var st devEnvState
		if err := json.Unmarshal([]byte(readFile(t, filepath.Join(f.cache(j), "dev-env", "state.json"))), &st); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(st.ShellFingerprint, "/nix/store/") || !strings.HasSuffix(st.ShellFingerprint, ".drv") {
			t.Fatalf("run %d: shell fingerprint %q is not a derivation path", i, st.ShellFingerprint)
		}
	}
}
