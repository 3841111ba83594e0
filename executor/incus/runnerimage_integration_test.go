package incus

// The pikaci-runner image scripts/incus-up builds with scripts/runner-image
// (docs/INCUS.md, "The pikaci-runner image"), launched in the real incusd:
// the original's guest layout is there and runs, and a second build of the
// same sources is a no-op.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/executor"
	"jerichoci/internal/testenv"
)

// runnerImageAlias is the alias under test: pikaci/dev, or
// $JERICHOCI_TEST_RUNNER_IMAGE_ALIAS (a developer's own import beside the
// shared one).
func runnerImageAlias() string {
	if a := os.Getenv("JERICHOCI_TEST_RUNNER_IMAGE_ALIAS"); a != "" {
		return a
	}
	return itAlias
}

// runnerImageDir is where scripts/incus-up keeps the built image.
func runnerImageDir() string {
	c := os.Getenv("JERICHOCI_CACHE_DIR")
	if c == "" {
		c = "/var/cache/jerichoci"
	}
	return filepath.Join(c, "incus-up", "images", "pikaci-runner")
}

// buildGuestRunner builds cmd/pikaci-incus-run as scripts/incus-up does
// (static, no VCS stamp, no build id), so its bytes and the image key match.
func buildGuestRunner(t *testing.T, repo string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pikaci-incus-run")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -buildid=", "-o", bin, "./cmd/pikaci-incus-run")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pikaci-incus-run: %v\n%s", err, out)
	}
	return bin
}

// runnerImageKey runs scripts/runner-image --key.
func runnerImageKey(t *testing.T, repo, runner string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repo, "scripts", "runner-image"), "--key", "--runner", runner).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/runner-image --key: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestIntegrationRunnerImage(t *testing.T) {
	c := realClient(t)
	ctx := t.Context()
	alias := runnerImageAlias()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	a, err := c.GetImageAlias(ctx, alias)
	if err != nil {
		testenv.Missing(t, "image alias %s in project %s: %v; run scripts/incus-up", alias, itProject, err)
	}
	img, err := c.GetImage(ctx, a.Target)
	if err != nil {
		t.Fatal(err)
	}
	runner := buildGuestRunner(t, repo)
	key := runnerImageKey(t, repo, runner)
	if again := runnerImageKey(t, repo, runner); again != key {
		t.Fatalf("runner-image --key = %s, then %s: the key is not a function of the sources", key, again)
	}
	if got := img.Properties["jerichoci.key"]; got != key {
		testenv.Missing(t, "%s is image %.12s with jerichoci.key %q, not the current runner image %s; run scripts/incus-up",
			alias, img.Fingerprint, got, key)
	}
	if img.Properties["jerichoci.role"] != "pikaci-runner" || img.Properties["os"] != "debian" {
		t.Errorf("image properties = %v, want jerichoci.role pikaci-runner and os debian", img.Properties)
	}

	// A second build of the same sources finds its key and does nothing.
	dir := runnerImageDir()
	before, err := os.Stat(filepath.Join(dir, "rootfs.tar.zst"))
	if err != nil {
		testenv.Missing(t, "the built image in %s: %v; run scripts/incus-up", dir, err)
	}
	out, err := exec.Command(filepath.Join(repo, "scripts", "runner-image"), "--runner", runner, "--out", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/runner-image --out %s: %v\n%s", dir, err, out)
	}
	if !strings.Contains(string(out), "is current") || !strings.HasSuffix(strings.TrimSpace(string(out)), "key "+key) {
		t.Errorf("second build printed %q, want `image %s is current` and `key %s`", out, key, key)
	}
	if after, err := os.Stat(filepath.Join(dir, "rootfs.tar.zst")); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("second build rewrote rootfs.tar.zst (mtime %v, then %v, %v)", before.ModTime(), after.ModTime(), err)
	}

	// Launch it and look inside.
	name := deletedAtEnd(t, c, "jci-test-rimg-")
	if err := c.CreateInstance(ctx, InstancesPost{
		Name: name, Type: TypeContainer, Source: InstanceSource{Type: "image", Alias: alias},
		Profiles: []string{"default", itProfile}, Start: true,
	}); err != nil {
		t.Fatal(err)
	}
	const sw = "/run/current-system/sw"
	pikaci := map[string]string{"HOME": "/home/pikaci", "PATH": sw + "/bin"}
	tests := []struct {
		name    string
		cmd     []string
		root    bool
		wantOut string // a substring of stdout+stderr
	}{
		{"bash", []string{sw + "/bin/bash", "-c", "echo $BASH_VERSION"}, false, "5."},
		{"python3", []string{sw + "/bin/python3", "-c", "import ssl, sys; print(sys.executable, ssl.OPENSSL_VERSION)"}, false, "OpenSSL"},
		{"node", []string{sw + "/bin/node", "-e", "console.log('node', process.version)"}, false, "node v"},
		{"npm", []string{sw + "/bin/npm", "--version"}, false, "."},
		{"psql", []string{sw + "/bin/psql", "--version"}, false, "psql (PostgreSQL)"},
		{"postgres", []string{sw + "/bin/postgres", "--version"}, false, "postgres (PostgreSQL)"},
		{"git", []string{sw + "/bin/git", "--version"}, false, "git version"},
		{"jq", []string{sw + "/bin/jq", "-n", `{"a":1}.a`}, false, "1"},
		{"curl", []string{sw + "/bin/curl", "--version"}, false, "curl "},
		{"coreutils and friends", []string{sw + "/bin/bash", "-c",
			"for p in env find awk gawk grep sed openssl ps kill mount which timeout; do command -v $p; done"}, false, sw + "/bin/timeout"},
		{"busybox's network applets, as in the busybox image", []string{sw + "/bin/bash", "-c",
			"PATH=/usr/local/bin:/usr/bin:/bin; for a in ip nc netstat udhcpc; do command -v $a; done; nc --help 2>&1 | head -n1"}, false, "/usr/local/bin/udhcpc"},
		{"users group", []string{"getent", "group", "users"}, false, "users:x:100:pikaci"},
		{"uid 1000", []string{"getent", "passwd", "1000"}, false, "pikaci:x:1000:100:"},
		{"id as the job user", []string{"id"}, false, "uid=1000(pikaci) gid=100(users)"},
		{"CA bundle", []string{sw + "/bin/bash", "-c", "test -s /etc/ssl/certs/ca-bundle.crt && grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-bundle.crt"}, false, ""},
		{"PGSHAREDIR", []string{"test", "-s", sw + "/share/postgresql/postgres.bki"}, false, ""},
		{"guest runner", []string{"test", "-x", executor.DefaultRunnerPath}, true, ""},
		{"a database as uid 1000", []string{sw + "/bin/bash", "-c", "set -e; export PGSHAREDIR=" + sw + "/share/postgresql; " +
			"initdb -A trust -U postgres -D /tmp/pg >/dev/null; pg_ctl -D /tmp/pg -o '-k /tmp -c listen_addresses=' -w start >/dev/null; " +
			"psql -h /tmp -U postgres -Atc 'select 40 + 2'; pg_ctl -D /tmp/pg -w stop >/dev/null"}, false, "42"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := ExecRequest{Command: tc.cmd, Env: pikaci, User: 1000, Group: 100, Cwd: "/home/pikaci"}
			if tc.root {
				req = ExecRequest{Command: tc.cmd}
			}
			var out bytes.Buffer
			code, err := c.Exec(ctx, name, req, &out, &out)
			if err != nil || code != 0 || !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("%q = exit %d, %v, output %q; want exit 0 with %q", tc.cmd, code, err, out.String(), tc.wantOut)
			}
		})
	}
}
