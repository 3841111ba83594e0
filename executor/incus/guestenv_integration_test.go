package incus

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/executor"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// TestIntegrationGuestEnvironment runs a job as uid 1000 and one as root in
// a pikaci/dev container through the real incusd, with the guest runner
// built from this tree (the image's own runner may be older), and checks
// the original's guest environment (docs/CONTRACTS.md, "Guest runner
// environment"): the ids, every variable the runner sets, the directories
// it gives to 1000:100, and its lifecycle events. It checks the
// environment, not the binaries of /run/current-system/sw/bin, which the
// image may lack.
func TestIntegrationGuestEnvironment(t *testing.T) {
	c := realClient(t)
	snapshot := t.TempDir()
	if err := os.Chmod(snapshot, 0o755); err != nil {
		t.Fatal(err)
	}
	buildRunner(t, filepath.Join(snapshot, "pikaci-incus-run"))
	const dump = `id -u; id -g; id -G; env | grep -v "^_=" | LC_ALL=C sort; ` +
		`stat -c "%u:%g %a %n" /home/pikaci /cargo-home /cargo-target /cargo-home/xdg-cache /run/pika-cloud/xdg-state; ` +
		`echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"`
	tests := []struct {
		name    string
		command model.JobCommand
		ids     string // id -u, id -g, id -G
		home    string
	}{
		{"user", model.Shell(dump), "1000\n100\n100\n", "/home/pikaci"},
		{"root", model.ShellAsRoot(dump), "0\n0\n0\n", "/root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hostLog lockedBuffer
			role := model.RolePikaciRunner
			job := executor.Job{RunID: uniqueName("run-"), ID: "guestenv-" + tc.name, TimeoutSecs: 120, Command: tc.command,
				Runtime: model.IncusRuntimeFor(role), Image: model.IncusImage{Role: role, Alias: itAlias, Recorded: &role},
				SnapshotDir: snapshot, JobDir: t.TempDir(), HostLog: &hostLog}
			cfg := executor.DefaultConfig()
			cfg.Project, cfg.Profile, cfg.Owner = itProject, itProfile, "jci-test"
			cfg.RunnerPath = model.GuestWorkspaceDir + "/pikaci-incus-run"
			res, err := (&executor.RemoteLinuxVM{Backend: NewBackend(c), Config: cfg}).Execute(t.Context(), job)
			if err != nil || res.Status != model.StatusPassed {
				t.Fatalf("Execute() = %+v, %v\nhost log:\n%.3000s", res, err, hostLog.String())
			}
			artifacts := filepath.Join(job.JobDir, "artifacts")
			guestLog, err := os.ReadFile(filepath.Join(artifacts, "guest.log"))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("guest.log of the %s job:\n%s", tc.name, guestLog)
			_, out, _ := strings.Cut(string(guestLog), "\n") // after the booted line
			if !strings.HasPrefix(out, tc.ids) {
				t.Errorf("id -u, id -g, id -G = %q, want %q", out[:min(len(out), 20)], tc.ids)
			}
			env := map[string]string{}
			var dirs []string
			for _, l := range strings.Split(out, "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					env[k] = v
				} else if strings.Contains(l, " /") {
					dirs = append(dirs, l)
				}
			}
			want := map[string]string{
				"PATH":              "/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"HOME":              tc.home,
				"XDG_CACHE_HOME":    "/cargo-home/xdg-cache",
				"XDG_STATE_HOME":    "/run/pika-cloud/xdg-state",
				"PGSYSCONFDIR":      "/run/current-system/sw",
				"PGSHAREDIR":        "/run/current-system/sw/share/postgresql",
				"SSL_CERT_FILE":     "/etc/ssl/certs/ca-bundle.crt",
				"NIX_SSL_CERT_FILE": "/etc/ssl/certs/ca-bundle.crt",
				"CARGO_HOME":        "/cargo-home",
				"CARGO_TARGET_DIR":  "/cargo-target",
				"CARGO_INCREMENTAL": "0",
				"CARGO_TERM_COLOR":  "never",
				"PWD":               "/workspace/snapshot",
				// What incusd gives the runner and the runner passes on.
				"USER":      "root",
				"LANG":      "C.UTF-8",
				"container": "lxc",
			}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("%s = %q, want %q", k, env[k], v)
				}
			}
			wantDirs := "1000:100 755 /home/pikaci\n1000:100 755 /cargo-home\n1000:100 755 /cargo-target\n" +
				"0:0 755 /cargo-home/xdg-cache\n1000:100 755 /run/pika-cloud/xdg-state"
			if got := strings.Join(dirs, "\n"); got != wantDirs {
				t.Errorf("directories:\n%s\nwant:\n%s", got, wantDirs)
			}
			// The same environment as the guest package's golden case, which
			// runs the runner outside a container.
			golden, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", "guest", tc.name+"-env", "stdout"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := envLines(out), envLines(string(golden)); got != want {
				t.Errorf("environment differs from the golden case %s-env:\n%s\nwant:\n%s", tc.name, got, want)
			}
			if env["boot_id"] == "" {
				t.Errorf("the guest's boot id is empty")
			}
			checkEvents(t, filepath.Join(artifacts, "events.jsonl"), env["boot_id"], job.Command)
		})
	}
}

// checkEvents: booted, starting with {command, run_as_root}, completed
// with {exit_code: 0}, numbered from 1, each with the boot id the guest
// sees (lxcfs gives each container its own).
func checkEvents(t *testing.T, path, bootID string, cmd model.JobCommand) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	command, root, err := cmd.Compile()
	if err != nil {
		t.Fatal(err)
	}
	starting, _ := json.Marshal(map[string]any{"command": command, "run_as_root": root})
	want := []struct {
		kind    string
		details string
	}{{"booted", ""}, {"starting", string(starting)}, {"completed", `{"exit_code":0}`}}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("events.jsonl has %d lines, want %d:\n%s", len(lines), len(want), b)
	}
	for i, l := range lines {
		var ev struct {
			Seq     int             `json:"seq"`
			Kind    string          `json:"kind"`
			BootID  string          `json:"boot_id"`
			Details json.RawMessage `json:"details"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("event %q: %v", l, err)
		}
		var details bytes.Buffer
		if len(ev.Details) > 0 {
			if err := json.Compact(&details, ev.Details); err != nil {
				t.Fatal(err)
			}
		}
		// Our marshalling sorts the keys as the original writes them.
		if ev.Seq != i+1 || ev.Kind != want[i].kind || ev.BootID != bootID || details.String() != want[i].details {
			t.Errorf("event %d = %s; want seq %d, kind %s, boot_id %s, details %s", i, l, i+1, want[i].kind, bootID, want[i].details)
		}
	}
}

// envLines are the NAME=value lines of out, but the boot id.
func envLines(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "=") && !strings.HasPrefix(l, "boot_id=") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// buildRunner builds the guest runner of this tree, static, at out.
func buildRunner(t *testing.T, out string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "no go on PATH to build the guest runner: %v", err)
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "jerichoci/cmd/pikaci-incus-run")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the guest runner: %v\n%s", err, b)
	}
}
