package nixbuild

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"jerichoci/internal/testenv"
	"jerichoci/run"
)

// needNix skips without nix outside CI and fails in CI, where
// scripts/nix-up installs it.
func needNix(t *testing.T) {
	t.Helper()
	testenv.Needs(t, "nix (scripts/nix-up)")
	if _, err := exec.LookPath("nix"); err != nil {
		testenv.Missing(t, "nix is not installed (sudo scripts/nix-up installs it): %v", err)
	}
}

// fixture copies the staged fixture repository with a fresh file, so
// its derivations are new to the store.
func fixture(t *testing.T, unique string) string {
	t.Helper()
	dst := t.TempDir()
	src, _ := filepath.Abs("../testdata/fixtures/staged-repo")
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("copy fixture: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dst, "src", "hello.txt"), []byte(unique+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestRealizeBuildsOnceThenReuses(t *testing.T) { eachNix(t, realizeBuildsOnceThenReuses) }

func realizeBuildsOnceThenReuses(t *testing.T, b *Builder) {
	dir := fixture(t, "nixbuild test "+t.Name()+" "+strconv.FormatInt(time.Now().UnixNano(), 10))
	installable := "path:" + dir + "#ci.x86_64-linux.pikaFollowupWorkspaceBuild"
	var log bytes.Buffer
	first, err := b.Realize(t.Context(), installable, &log)
	if err != nil {
		t.Fatalf("realize: %v\n%s", err, log.String())
	}
	if first.Reused || !strings.HasPrefix(first.Path, "/nix/store/") || !strings.HasSuffix(first.Path, "-pikaFollowup-workspace-build") {
		t.Fatalf("first realize = %+v", first)
	}
	if _, err := os.Stat(filepath.Join(first.Path, "bin", "run-pika-actionlint")); err != nil {
		t.Errorf("wrapper missing: %v", err)
	}
	if !strings.Contains(log.String(), "[pikaci] "+b.program()+" --extra-experimental-features 'nix-command flakes' build --store daemon --option accept-flake-config false --no-write-lock-file") {
		t.Errorf("log lacks the build command through the daemon, ignoring the flake's nixConfig:\n%s", log.String())
	}
	for _, never := range []string{"--accept-flake-config", "--impure", "sandbox"} {
		if strings.Contains(log.String(), never) {
			t.Errorf("log has %q:\n%s", never, log.String())
		}
	}
	// Run as root, the flake is evaluated as the unprivileged eval user
	// from its copy in the store, never from root's snapshot directory.
	if os.Geteuid() == 0 {
		if !strings.Contains(log.String(), " store add-path --store daemon --option accept-flake-config false --name source "+dir+"\n") ||
			!strings.Contains(log.String(), "--json path:/nix/store/") || !strings.Contains(log.String(), "(as "+DefaultEvalUser+")") ||
			strings.Contains(log.String(), "path:"+dir) {
			t.Errorf("log does not show the snapshot added by root and evaluated as %s:\n%s", DefaultEvalUser, log.String())
		}
	}
	// Same content, different per-run metadata: nothing is built.
	if err := os.WriteFile(filepath.Join(dir, "pikaci-snapshot.json"), []byte(`{"created_at":"now"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	second, err := b.Realize(t.Context(), installable, &log)
	if err != nil {
		t.Fatalf("second realize: %v\n%s", err, log.String())
	}
	if !second.Reused || second.Path != first.Path {
		t.Errorf("second realize = %+v, want reuse of %s", second, first.Path)
	}
	if strings.Contains(log.String(), " build ") {
		t.Errorf("second realize ran nix build:\n%s", log.String())
	}
}

func TestRealizeFailures(t *testing.T) { eachNix(t, realizeFailures) }

func realizeFailures(t *testing.T, b *Builder) {
	dir := fixture(t, "nixbuild failures")
	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "flake.nix"), []byte("{ outputs = { self }: { this is not nix"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, installable, inLog string
	}{
		{"builder fails", "path:" + dir + "#ci.x86_64-linux.brokenWorkspaceDeps", "fails on purpose"},
		{"syntax error", "path:" + broken + "#ci.x86_64-linux.x", "syntax error"},
		{"no such output", "path:" + dir + "#ci.x86_64-linux.nopeWorkspaceDeps", "nopeWorkspaceDeps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			_, err := b.Realize(t.Context(), tc.installable, &log)
			var exit *run.BuildExitError
			if !errors.As(err, &exit) || exit.Code == nil || *exit.Code == 0 {
				t.Fatalf("err = %v, want a BuildExitError with an exit code", err)
			}
			if !strings.Contains(log.String(), tc.inLog) {
				t.Errorf("log lacks %q:\n%s", tc.inLog, log.String())
			}
		})
	}
}

func TestRealizeWithoutNix(t *testing.T) {
	_, err := (&Builder{Program: "/nonexistent/nix"}).Realize(t.Context(), "path:/x#y", &bytes.Buffer{})
	if !errors.Is(err, ErrNoNix) || !strings.Contains(err.Error(), "scripts/nix-up") || !strings.Contains(err.Error(), "/nonexistent/nix") {
		t.Errorf("err = %v", err)
	}
}

func TestOutPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{`[{"drvPath":"/nix/store/a.drv","outputs":{"out":"/nix/store/a"}}]`, "/nix/store/a", ""},
		{`[{"outputs":{"bin":"/nix/store/b"}}]`, "/nix/store/b", ""},
		{`[{"outputs":{"bin":"/nix/store/b","lib":"/nix/store/c"}}]`, "", "no `out` output"},
		{`[]`, "", "no output path"},
		{`nope`, "", "decode"},
	} {
		got, err := outPath([]byte(tc.in))
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("outPath(%s) = %q, %v", tc.in, got, err)
		}
	}
}

// TestPathInfo reads both shapes of `nix path-info --json`: Nix 2.8's
// array (Debian 12's nix-bin) and the object keyed by store path of Nix
// 2.19 and later (Debian 13's 2.26), for a path the store has and one it
// lacks.
func TestPathInfo(t *testing.T) {
	const p = "/nix/store/9kh3s3a5xlb0y4yzsmc4q3yn4r2r3pvd-workspace-build"
	for _, tc := range []struct {
		name, in string
		path     string
		valid    bool
		err      string
	}{
		{"2.8 valid", `[{"path":"` + p + `","narHash":"sha256:0a","narSize":120,"references":[],"registrationTime":1700000000,"valid":true}]`, p, true, ""},
		{"2.8 valid without the field", `[{"path":"` + p + `","narHash":"sha256:0a"}]`, p, true, ""},
		{"2.8 missing", `[{"path":"` + p + `","valid":false}]`, p, false, ""},
		{"2.26 valid", `{"` + p + `":{"deriver":"/nix/store/x.drv","narHash":"sha256-0a","narSize":120,"references":[],"registrationTime":1700000000,"signatures":[],"ultimate":true}}`, p, true, ""},
		{"2.26 missing", `{"` + p + `":null}`, p, false, ""},
		{"empty array", `[]`, "", false, ""},
		{"empty object", `{}`, "", false, ""},
		{"garbage", `nope`, "", false, "want an array"},
	} {
		path, valid, err := pathInfo([]byte(tc.in))
		if path != tc.path || valid != tc.valid || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: pathInfo = %q, %v, %v; want %q, %v, error with %q", tc.name, path, valid, err, tc.path, tc.valid, tc.err)
		}
	}
}

// TestRealizeCannotReadRootFiles: a flake input `path:` of a directory
// only root may read (as /root or /etc/shadow are) is read by the
// evaluating nix client, outside the sandbox. Run as root, jerichoci
// evaluates as the eval user, so the input cannot be read and nothing of
// it reaches the world-readable store.
func TestRealizeCannotReadRootFiles(t *testing.T) { eachNix(t, realizeCannotReadRootFiles) }

func realizeCannotReadRootFiles(t *testing.T, b *Builder) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root: as another user nix runs as that user, which is the point")
	}
	secretDir := t.TempDir() // 0700, root's
	marker := "root-only " + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.WriteFile(filepath.Join(secretDir, "secret"), []byte(marker), 0o600); err != nil {
		t.Fatal(err)
	}
	flake := t.TempDir()
	if err := os.WriteFile(filepath.Join(flake, "flake.nix"), []byte(`{
  inputs.s = { url = "path:`+secretDir+`"; flake = false; };
  outputs = { self, s }: { x = derivation { name = "leak"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "cat ${s}/secret > $out" ]; }; };
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := b.Realize(t.Context(), "path:"+flake+"#x", &log)
	var exit *run.BuildExitError
	if !errors.As(err, &exit) {
		t.Fatalf("realize = %+v, %v; want the evaluation refused\n%s", res, err, log.String())
	}
	if !strings.Contains(log.String(), "Permission denied") {
		t.Errorf("log does not say the input was unreadable:\n%s", log.String())
	}
	if strings.Contains(log.String(), marker) {
		t.Errorf("the secret reached the log:\n%s", log.String())
	}
}
