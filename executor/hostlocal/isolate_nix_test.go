package hostlocal

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// TestIsolatedNixRunsAsUser: for a job run as the host-jobs user, nix
// eval and print-dev-env run as that user too, in a scrubbed environment
// naming the Nix daemon, on the workspace (the user cannot reach the run's
// snapshot), which a job that reused its workspace copies afresh first.
func TestIsolatedNixRunsAsUser(t *testing.T) {
	u := jobUser(t)
	f := isolatedFixture(t, u)
	t.Setenv("JCI_DAEMON_PROCESS_MARKER", "process-marker-value")
	nixDir := filepath.Join(f.root, "fake-nix")
	f.x.Nix = fakeNix(t, nixDir)
	// The user's nix records who it ran as next to its calls.
	script := readFile(t, f.x.Nix)
	script = strings.Replace(script, "\nif [ -e", "\necho \"uid=$(id -u) groups=$(id -G) remote=$NIX_REMOTE home=$HOME tmp=$TMPDIR nproc=$(awk '/^Max processes/ { print $3 \"/\" $4 }' /proc/self/limits) pwd=$(pwd) marker=${JCI_DAEMON_MARKER-unset}${JCI_DAEMON_PROCESS_MARKER-unset}\" >> \"$d/who\"\nif [ -e", 1)
	writeFile(t, f.x.Nix, script)
	if err := os.Chmod(nixDir, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.x.Nix} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(nixDir, "fingerprint"), "/nix/store/f1.drv")
	flake := map[string]string{"flake.nix": "{ outputs = _: {}; }"}
	snap := f.snapshot("s1", flake, "h1")
	for i, step := range []struct {
		shell, refresh string
		nixCalls       int
		rematerialized bool
	}{
		{"default", envRefreshed, 2, false},
		{"default", envReused, 0, false},
		// Another shell on the same source: the workspace was reused, so
		// nix gets a fresh copy of the snapshot.
		{"ci", envRefreshed, 2, true},
	} {
		f.x.Env = env("PIKACI_HOST_LOCAL_NIX_SHELL", step.shell, "JCI_DAEMON_MARKER", "daemon-marker-value", "PATH", "/usr/bin:/bin")
		j := f.job("nix", snap, `printf '%s' "$HL_FROM_NIX" > "$ARTIFACTS/from-nix"`)
		j.JobDir = filepath.Join(f.root, "jobs", "nix", strconv.Itoa(i))
		res, err := f.x.Execute(context.Background(), j)
		if err != nil || res.Status != model.StatusPassed {
			t.Fatalf("step %d: Execute = %+v, %v\n%s", i, res, err, logOf(j))
		}
		log := logOf(j)
		if !strings.Contains(log, "[pikaci] host-local environment "+step.refresh+" in ") {
			t.Errorf("step %d: want %q:\n%s", i, step.refresh, log)
		}
		if got := strings.Contains(log, "host-local workspace rematerialized from cached snapshot for the nix environment refresh"); got != step.rematerialized {
			t.Errorf("step %d: workspace copied afresh for nix: %t, want %t:\n%s", i, got, step.rematerialized, log)
		}
		cs := calls(t, nixDir)
		if len(cs) != step.nixCalls {
			t.Fatalf("step %d: nix calls %q, want %d", i, cs, step.nixCalls)
		}
		cache := f.cache(j)
		workspace := filepath.Join(cache, "workspace")
		if len(cs) > 0 {
			want := [][]string{evalCall(workspace, step.shell), printCall(workspace, step.shell)}
			if !equalCalls(cs, want) {
				t.Errorf("step %d: nix calls\n%q\nwant\n%q", i, cs, want)
			}
			who := filepath.Join(nixDir, "who")
			wantWho := strings.Repeat("uid="+strconv.Itoa(int(u.UID))+" groups="+strconv.Itoa(int(u.GID))+
				" remote=daemon home="+filepath.Join(cache, "home")+" tmp="+filepath.Join(cache, "tmp")+
				" nproc="+strconv.Itoa(DefaultMaxProcesses)+"/"+strconv.Itoa(DefaultMaxProcesses)+" pwd="+workspace+" marker=unsetunset\n", 2)
			if got := readFile(t, who); got != wantWho {
				t.Errorf("step %d: nix ran as\n%s\nwant\n%s", i, got, wantWho)
			}
			if err := os.Remove(who); err != nil {
				t.Fatal(err)
			}
		}
		if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "from-nix")); got != "/nix/store/f1.drv" {
			t.Errorf("step %d: HL_FROM_NIX = %q", i, got)
		}
	}
}

// TestIsolatedRealNix renders a real flake's dev shell as the host-jobs
// user through the Nix daemon (scripts/nix-up starts it; sandboxed builds
// as the nixbld users) and runs the job in it.
func TestIsolatedRealNix(t *testing.T) {
	testenv.Needs(t, "nix (scripts/nix-up)")
	u := jobUser(t)
	skip := func(format string, a ...any) { t.Helper(); testenv.Missing(t, format, a...) }
	nix, err := exec.LookPath("nix")
	if err != nil {
		skip("no nix on PATH; install it with `sudo scripts/nix-up` to run this test")
	}
	probe := filepath.Join(t.TempDir(), "probe")
	writeFile(t, filepath.Join(probe, "flake.nix"), realFlake("probe"))
	cmd := exec.Command(nix, "--extra-experimental-features", "nix-command flakes", "eval", "--raw", "path:"+probe+"#devShells."+nixSystem()+".default.drvPath")
	cmd.Env = []string{"NIX_REMOTE=daemon", "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		skip("this host's Nix daemon is not usable (%v): %s; scripts/nix-up starts it", err, strings.TrimSpace(stderr.String()))
	}
	isolatedDevShell(t, u, nix)
}

// isolatedDevShell renders a real flake's dev shell as the host-jobs user
// u with the nix program nix and runs the job in it.
func isolatedDevShell(t *testing.T, u *User, nix string) {
	t.Helper()
	f := isolatedFixture(t, u)
	f.x.Nix = nix
	f.x.Env = env("PATH", "/usr/bin:/bin")
	// realFlake sets PATH: the builder's bash finds itself in the sandbox.
	flake := realFlake("from-dev-shell-as-user")
	snap := f.snapshot("s", map[string]string{"flake.nix": flake}, "h1")
	j := f.job("real", snap, `printf '%s %s' "$HL_MARKER" "$(id -u)" > "$ARTIFACTS/marker"`)
	res, err := f.x.Execute(context.Background(), j)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, logOf(j))
	}
	want := "from-dev-shell-as-user " + strconv.Itoa(int(u.UID))
	if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "marker")); got != want {
		t.Fatalf("the job printed %q, want %q\n%s", got, want, logOf(j))
	}
	if !strings.Contains(logOf(j), "[pikaci] host-local environment "+envRefreshed+" in ") {
		t.Fatalf("want %q:\n%s", envRefreshed, logOf(j))
	}
}
