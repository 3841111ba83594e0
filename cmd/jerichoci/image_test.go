package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"jerichoci/executor/incus"
	"jerichoci/images"
	"jerichoci/internal/testenv"
)

// runImageCLI runs `jerichoci image ARGS`. Builds get a stand-in guest
// runner (the image tests never execute it) unless ARGS name one.
func runImageCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if !slices.Contains(args, "--runner") && (slices.Contains(args, "build") || slices.Contains(args, "build-import")) {
		runner := filepath.Join(t.TempDir(), "pikaci-incus-run")
		if err := os.WriteFile(runner, []byte("#!/bin/sh\n# stand-in guest runner\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		// After a leading action word, else first: flags end at a positional.
		at := 0
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			at = 1
		}
		args = slices.Insert(slices.Clone(args), at, "--runner", runner)
	}
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, env: os.LookupEnv}
	code = c.main(t.Context(), append([]string{"image"}, args...))
	return out.String(), errb.String(), code
}

func TestImageUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // substring; "" = must be empty
		stderr string // exact when exact is set, else substring; "" = must be empty
		exact  bool
	}{
		{args: []string{"build", "--role", "nope"}, code: exitUsage, stderr: "unsupported role: nope\n", exact: true},
		{args: []string{"--role", "PIKACI-RUNNER", "import"}, code: exitUsage, stderr: "unsupported role: PIKACI-RUNNER\n", exact: true},
		{args: []string{"build"}, code: exitUsage, stderr: "jerichoci image: --role is required"},
		{args: []string{"--role", "pikaci-runner"}, code: exitUsage, stderr: "jerichoci image: missing action"},
		{args: []string{"frob", "--role", "pikaci-runner"}, code: exitUsage, stderr: `jerichoci image: unknown action "frob"`},
		{args: []string{"build", "--role", "pikaci-runner", "extra"}, code: exitUsage, stderr: `jerichoci image: unexpected argument "extra"`},
		{args: []string{"build", "--bogus"}, code: exitUsage, stderr: "flag provided but not defined: -bogus"},
		{args: []string{"build", "--role", "pikaci-runner", "--runner", "/nonexistent/pikaci-incus-run"}, code: exitUsage,
			stderr: "read the guest runner /nonexistent/pikaci-incus-run: open /nonexistent/pikaci-incus-run: no such file or directory (build it with `make build`, or pass --runner)"},
		// The local tiny build never replaces the Debian runner image.
		{args: []string{"build-import", "--role", "pikaci-runner"}, code: exitUsage,
			stderr: "jerichoci image: pikaci/dev is the Debian runner image scripts/runner-image builds"},
		{args: []string{"--help"}, code: exitOK, stdout: "usage: jerichoci image build|import|build-import --role ROLE"},
		{args: []string{"import", "--role", "pikaci-runner", "--artifact", "/nonexistent/result"}, code: exitUsage,
			stderr: "jerichoci: image artifact: stat /nonexistent/result: no such file or directory\n", exact: true},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := runImageCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if (tc.stdout == "" && stdout != "") || !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout = %q, want %q", stdout, tc.stdout)
			}
			switch {
			case tc.exact && stderr != tc.stderr:
				t.Errorf("stderr = %q, want exactly %q", stderr, tc.stderr)
			case (tc.stderr == "" && stderr != "") || !strings.Contains(stderr, tc.stderr):
				t.Errorf("stderr = %q, want %q", stderr, tc.stderr)
			}
		})
	}
}

// imageNeedHost skips (fails in CI) without what scripts/incus-up provides.
func imageNeedHost(t *testing.T, what string, err error) {
	t.Helper()
	testenv.Needs(t, "what scripts/incus-up provides")
	if err == nil {
		return
	}
	testenv.Missing(t, "%s: %v; run scripts/incus-up (make test does)", what, err)
}

var imageFingerprintRE = regexp.MustCompile(`fingerprint ([0-9a-f]{64})`)

func TestImageBuildIsReproducible(t *testing.T) {
	_, err := os.Stat(images.DefaultBusybox)
	imageNeedHost(t, "busybox-static missing", err)
	var fps []string
	for _, dir := range []string{t.TempDir(), t.TempDir()} {
		// The action may come after the flags, as in the original script.
		stdout, stderr, code := runImageCLI(t, "--role", "pikaci-runner", "--artifact", dir, "build")
		if code != exitOK {
			t.Fatalf("build: exit %d, stderr %q", code, stderr)
		}
		m := imageFingerprintRE.FindStringSubmatch(stdout)
		if m == nil || !strings.Contains(stdout, filepath.Join(dir, images.ArtifactName)) {
			t.Fatalf("build printed %q, want the artifact path and fingerprint", stdout)
		}
		a, err := images.FindArtifact(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fp, err := a.Fingerprint(); err != nil || fp != m[1] {
			t.Fatalf("artifact fingerprint %s, %v; printed %s", fp, err, m[1])
		}
		fps = append(fps, m[1])
	}
	if fps[0] != fps[1] {
		t.Fatalf("two builds gave %s and %s", fps[0], fps[1])
	}
}

// TestImageBuildImport builds and imports under a test alias twice through
// the command (the second run changes nothing). What the image store does
// on incusd, the VM layout included, is tested with the store in
// executor/incus (TestImageStore).
func TestImageBuildImport(t *testing.T) {
	_, err := os.Stat(images.DefaultBusybox)
	imageNeedHost(t, "busybox-static missing", err)
	// The command's own way to incusd.
	cl, err := execConfig{Project: defaultIncusProject}.incusClient(os.LookupEnv, nil)
	imageNeedHost(t, "no incusd", err)
	defer cl.Close()
	_, err = cl.Server(t.Context())
	imageNeedHost(t, "incusd not reachable", err)
	_, err = cl.GetImageAlias(t.Context(), "pikaci/dev")
	imageNeedHost(t, "project "+defaultIncusProject+" without pikaci/dev", err)

	b := make([]byte, 5)
	rand.Read(b)
	alias := "jci-test/cli-" + hex.EncodeToString(b)
	var fp string
	cleanupTestImage(t, cl, alias, &fp)

	dir := t.TempDir()
	args := []string{"build-import", "--role", "pikaci-runner", "--alias", alias, "--artifact", dir}
	stdout, stderr, code := runImageCLI(t, args...)
	if code != exitOK {
		t.Fatalf("build-import: exit %d, stderr %q", code, stderr)
	}
	fp = imageFingerprintRE.FindStringSubmatch(stdout)[1]
	// The runner image may be there already (it is pikaci/dev's).
	if !strings.Contains(stdout, "alias "+alias+" in project pika-managed-agents: ") || !strings.Contains(stdout, fp) {
		t.Fatalf("build-import printed %q", stdout)
	}
	stdout, _, code = runImageCLI(t, args...)
	if code != exitOK || !strings.Contains(stdout, "unchanged ("+fp+")") {
		t.Fatalf("second build-import: exit %d, %q; want unchanged", code, stdout)
	}
	if a, err := cl.GetImageAlias(t.Context(), alias); err != nil || a.Target != fp {
		t.Fatalf("alias %s = %+v, %v; want target %s", alias, a, err, fp)
	}
}

func TestDescribeImport(t *testing.T) {
	const where = "alias a/b in project p: "
	tests := []struct {
		r    images.ImportResult
		want string
	}{
		{images.ImportResult{Action: images.Unchanged, Fingerprint: "f1"}, "unchanged (f1)"},
		{images.ImportResult{Action: images.Aliased, Fingerprint: "f1"}, "now points at the existing image f1"},
		{images.ImportResult{Action: images.Uploaded, Fingerprint: "f2"}, "uploaded image f2"},
		{images.ImportResult{Action: images.Uploaded, Fingerprint: "f2", Previous: "f1"}, "uploaded image f2, was f1"},
		{images.ImportResult{Action: images.Aliased, Fingerprint: "f2", Previous: "f1", Pruned: true}, "now points at the existing image f2, was f1 (deleted)"},
	}
	for _, tc := range tests {
		if got := describeImport(tc.r, "a/b", "p"); got != where+tc.want {
			t.Errorf("describeImport(%+v) = %q, want %q", tc.r, got, where+tc.want)
		}
	}
}

// cleanupTestImage deletes, when the test ends, the alias a test made and
// the image *fp it pointed at, if no other alias uses that image.
func cleanupTestImage(t *testing.T, cl *incus.Client, alias string, fp *string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		if err := cl.DeleteImageAlias(ctx, alias); err != nil {
			t.Error(err)
		}
		if *fp == "" {
			return
		}
		if img, err := cl.GetImage(ctx, *fp); err == nil && len(img.Aliases) == 0 {
			if err := cl.DeleteImage(ctx, *fp); err != nil {
				t.Error(err)
			}
		}
	})
}
