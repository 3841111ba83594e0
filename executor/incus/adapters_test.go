package incus

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"jerichoci/executor"
	"jerichoci/images"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// needHost skips (fails in CI) on an error that says the host lacks what
// scripts/incus-up provides.
func needHost(t *testing.T, what string, err error) {
	t.Helper()
	testenv.Needs(t, "what scripts/incus-up provides")
	if err != nil {
		testenv.Missing(t, "%s: %v; run scripts/incus-up", what, err)
	}
}

// TestImageStore imports a built runner image under a test alias twice (the
// second import changes nothing), then an image directory in the original's
// layout (metadata.tar.xz + disk.qcow2) under the same alias, which moves
// the alias and prunes the first image.
func TestImageStore(t *testing.T) {
	t.Parallel()
	_, err := os.Stat(images.DefaultBusybox)
	needHost(t, "busybox-static missing", err)
	c := realClient(t)
	ctx := t.Context()
	s := NewImageStore(c)

	alias := uniqueName("jci-test/store-")
	var uploaded []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		if err := c.DeleteImageAlias(ctx, alias); err != nil {
			t.Error(err)
		}
		// Delete only the images this test uploaded and no alias uses.
		for _, fp := range uploaded {
			if img, err := c.GetImage(ctx, fp); err == nil && len(img.Aliases) == 0 {
				if err := c.DeleteImage(ctx, fp); err != nil {
					t.Error(err)
				}
			}
		}
	})

	// What the server does not have is no error.
	missing := fmt.Sprintf("%064x", 1)
	if target, err := s.AliasTarget(ctx, alias); target != "" || err != nil {
		t.Fatalf("AliasTarget(missing) = %q, %v; want \"\", nil", target, err)
	}
	if has, err := s.HasImage(ctx, missing); has || err != nil {
		t.Fatalf("HasImage(missing) = %v, %v; want false, nil", has, err)
	}
	if pruned, err := s.PruneImage(ctx, missing); pruned || err != nil {
		t.Fatalf("PruneImage(missing) = %v, %v; want false, nil", pruned, err)
	}

	// A runner of its own makes the image this test's alone.
	a, img, err := images.BuildDir(ctx, t.TempDir(), images.Options{Role: model.RolePikaciRunner,
		Files: []images.File{{Path: executor.DefaultRunnerPath, Mode: 0o755, Data: []byte("#!/bin/sh\n# " + rand.Text() + "\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	fp := img.Fingerprint
	uploaded = append(uploaded, fp)
	res, err := images.Import(ctx, s, a, alias, "jerichoci test image")
	if err != nil || res != (images.ImportResult{Action: images.Uploaded, Fingerprint: fp}) {
		t.Fatalf("first import = %+v, %v; want uploaded %s", res, err, fp)
	}
	res, err = images.Import(ctx, s, a, alias, "jerichoci test image")
	if err != nil || res != (images.ImportResult{Action: images.Unchanged, Fingerprint: fp}) {
		t.Fatalf("second import = %+v, %v; want unchanged", res, err)
	}
	if got, err := c.GetImageAlias(ctx, alias); err != nil || got.Target != fp {
		t.Fatalf("alias %s = %+v, %v; want target %s", alias, got, err, fp)
	}
	if got, err := c.GetImage(ctx, fp); err != nil || got.Properties[images.RoleProperty] != "pikaci-runner" {
		t.Fatalf("image %s: %+v, %v; want property %s", fp, got, err, images.RoleProperty)
	}

	// The original's VM image layout; the bytes only need to be unique.
	vm := t.TempDir()
	meta := "architecture: x86_64\ncreation_date: 1\nproperties:\n  os: NixOS\n  release: unstable\n"
	if err := writeTarXZ(filepath.Join(vm, "metadata.tar.xz"), "metadata.yaml", meta); err != nil {
		needHost(t, "xz missing", err)
	}
	if err := os.WriteFile(filepath.Join(vm, "disk.qcow2"), []byte("QFI\xfb"+rand.Text()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vm, "README.txt"), []byte("test image\n"), 0o644)
	va, err := images.FindArtifact(vm)
	if err != nil {
		t.Fatal(err)
	}
	vfp, err := va.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	uploaded = append(uploaded, vfp)
	res, err = images.Import(ctx, s, va, alias, "jerichoci test VM image")
	if err != nil || res != (images.ImportResult{Action: images.Uploaded, Fingerprint: vfp, Previous: fp, Pruned: true}) {
		t.Fatalf("import of the VM layout = %+v, %v; want uploaded %s, previous %s pruned", res, err, vfp, fp)
	}
	if got, err := c.GetImage(ctx, vfp); err != nil || got.Type != TypeVirtualMachine {
		t.Fatalf("imported VM image: %+v, %v", got, err)
	}
	if has, err := s.HasImage(ctx, fp); has || err != nil {
		t.Fatalf("HasImage(pruned %s) = %v, %v; want false", fp, has, err)
	}
}

// writeTarXZ writes a one-file tar.xz with the system's tar and xz, as the
// original's packages were made.
func writeTarXZ(dst, name, body string) error {
	src := filepath.Join(filepath.Dir(dst), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	out, err := exec.Command("tar", "-C", src, "-cJf", dst, name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tar: %w: %s", err, out)
	}
	return nil
}

// TestInstancesListOwned lists only the instances with all three keys, and
// deletes idempotently. (incusd drops a key set to "", so an empty run id or
// owner is a missing key here.)
func TestInstancesListOwned(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()
	keys := func(runID, jobID, owner string) map[string]string {
		m := map[string]string{}
		for k, v := range map[string]string{executor.ConfigRunID: runID, executor.ConfigJobID: jobID, executor.ConfigOwner: owner,
			executor.ConfigFleet: "fleet-test"} {
			if v != "-" {
				m[k] = v
			}
		}
		return m
	}
	owned := launch(t, c, false, keys("r-1", "hello", "jerichoci-serve/job-1/d.1"))
	var notOwned []string
	for _, k := range []map[string]string{
		keys("r-3", "-", "o"), keys("-", "j", "o"), keys("r-4", "j", "-"),
	} {
		notOwned = append(notOwned, launch(t, c, false, k))
	}

	got, err := NewInstances(c).ListOwned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]OwnedInstance{
		owned: {Name: owned, RunID: "r-1", JobID: "hello", Owner: "jerichoci-serve/job-1/d.1", Fleet: "fleet-test"},
	}
	before := time.Now()
	for _, in := range got {
		if slices.Contains(notOwned, in.Name) {
			t.Errorf("ListOwned returned %+v, which lacks a key", in)
		}
		if w, ok := want[in.Name]; ok {
			if in.Created.IsZero() || in.Created.After(before) {
				t.Errorf("ListOwned: %s created %v, want incusd's creation time", in.Name, in.Created)
			}
			in.Created = time.Time{}
			if in != w {
				t.Errorf("ListOwned: %+v, want %+v", in, w)
			}
			delete(want, in.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("ListOwned misses %v", want)
	}

	for range 2 { // a missing instance is no error
		if err := NewInstances(c).Delete(ctx, owned); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GetInstance(ctx, owned); !IsNotFound(err) {
		t.Fatalf("after Delete: %v, want not found", err)
	}
}
