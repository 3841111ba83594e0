package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"jerichoci/executor/incus"
	"jerichoci/images"
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
	if err == nil {
		return
	}
	msg := what + ": " + err.Error()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: make test runs scripts/incus-up first)", msg)
	}
	t.Skipf("%s; run scripts/incus-up", msg)
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

// TestImageBuildImport builds and imports under a test alias twice (the
// second run changes nothing), then imports an image directory in the
// original's layout (metadata.tar.xz + disk.qcow2) under the same alias.
func TestImageBuildImport(t *testing.T) {
	_, err := os.Stat(images.DefaultBusybox)
	imageNeedHost(t, "busybox-static missing", err)
	sock, err := incus.SocketPath(os.LookupEnv)
	imageNeedHost(t, "no incusd", err)
	cl, err := incus.NewUnix(sock, incus.WithProject(defaultIncusProject))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = cl.Server(t.Context())
	imageNeedHost(t, "incusd not reachable", err)
	_, err = cl.GetImageAlias(t.Context(), "pikaci/dev")
	imageNeedHost(t, "project "+defaultIncusProject+" without pikaci/dev", err)

	b := make([]byte, 5)
	rand.Read(b)
	alias := "jci-test/cli-" + hex.EncodeToString(b)
	var uploaded []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.DeleteImageAlias(ctx, alias); err != nil {
			t.Error(err)
		}
		// Delete only the images this test uploaded and no alias uses.
		for _, fp := range uploaded {
			if img, err := cl.GetImage(ctx, fp); err == nil && len(img.Aliases) == 0 {
				if err := cl.DeleteImage(ctx, fp); err != nil {
					t.Error(err)
				}
			}
		}
	})

	dir := t.TempDir()
	args := []string{"build-import", "--role", "pikaci-runner", "--alias", alias, "--artifact", dir}
	stdout, stderr, code := runImageCLI(t, args...)
	if code != exitOK {
		t.Fatalf("build-import: exit %d, stderr %q", code, stderr)
	}
	fp := imageFingerprintRE.FindStringSubmatch(stdout)[1]
	uploaded = append(uploaded, fp)
	// The runner image may be there already (it is pikaci/dev's).
	if !strings.Contains(stdout, "alias "+alias+" in project pika-managed-agents: ") || !strings.Contains(stdout, fp) {
		t.Fatalf("build-import printed %q", stdout)
	}
	stdout, _, code = runImageCLI(t, args...)
	if code != exitOK || !strings.Contains(stdout, "unchanged ("+fp+")") {
		t.Fatalf("second build-import: exit %d, %q; want unchanged", code, stdout)
	}
	a, err := cl.GetImageAlias(t.Context(), alias)
	if err != nil || a.Target != fp {
		t.Fatalf("alias %s = %+v, %v; want target %s", alias, a, err, fp)
	}
	img, err := cl.GetImage(t.Context(), fp)
	if err != nil || img.Properties[images.RoleProperty] != "pikaci-runner" {
		t.Fatalf("image %s: %+v, %v; want property %s", fp, img, err, images.RoleProperty)
	}

	// The original's VM image layout; the bytes only need to be unique.
	vm := t.TempDir()
	meta := "architecture: x86_64\ncreation_date: 1\nproperties:\n  os: NixOS\n  release: unstable\n"
	if err := imageWriteTarXZ(filepath.Join(vm, "metadata.tar.xz"), "metadata.yaml", meta); err != nil {
		imageNeedHost(t, "xz missing", err)
	}
	if err := os.WriteFile(filepath.Join(vm, "disk.qcow2"), append([]byte("QFI\xfb"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vm, "README.txt"), []byte("test image\n"), 0o644)
	stdout, stderr, code = runImageCLI(t, "import", "--role", "pikaci-runner", "--alias", alias, "--artifact", vm)
	if code != exitOK {
		t.Fatalf("import of the VM layout: exit %d, stderr %q", code, stderr)
	}
	va, _ := images.FindArtifact(vm)
	vfp, _ := va.Fingerprint()
	uploaded = append(uploaded, vfp)
	if !strings.Contains(stdout, "uploaded image "+vfp+", was "+fp) {
		t.Fatalf("import printed %q, want the upload and the former target", stdout)
	}
	vimg, err := cl.GetImage(t.Context(), vfp)
	if err != nil || vimg.Type != incus.TypeVirtualMachine {
		t.Fatalf("imported VM image: %+v, %v", vimg, err)
	}
}

// imageWriteTarXZ writes a one-file tar.xz with the system's tar and xz, as the
// original's packages were made.
func imageWriteTarXZ(dst, name, body string) error {
	src := filepath.Join(filepath.Dir(dst), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	return imageRunCmd("tar", "-C", src, "-cJf", dst, name)
}

func imageRunCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}
