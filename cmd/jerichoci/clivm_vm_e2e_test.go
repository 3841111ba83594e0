package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"jerichoci/executor/incus"
	"jerichoci/images"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// TestE2EVMImageRefusedInPrepareNode imports a virtual-machine image into
// the real incusd (a metadata.tar.xz and an empty qcow2 made by qemu-img:
// importing needs no KVM) and runs a lane on it. On a host that cannot run
// virtual machines the job's runner prepare node fails with the server's
// reason (no /dev/kvm, no vhost_vsock), the run exits 2, and no instance
// of the run's owner is left. Where the host runs VMs there is nothing to
// refuse.
func TestE2EVMImageRefusedInPrepareNode(t *testing.T) {
	cl := requireIncus(t)
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		testenv.Missing(t, "qemu-img (Debian package qemu-utils) makes the test's VM disk: %v", err)
	}
	s, err := cl.Server(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Supports(incus.TypeVirtualMachine) {
		t.Skipf("this host runs virtual machines (driver %q): nothing to refuse", s.Environment.Driver)
	}
	alias := fmt.Sprintf("jci-test/clivm-vm-%d", time.Now().UnixNano()%1e9)
	fp := importVMImage(t, cl, qemuImg, alias)
	if img, err := cl.GetImage(t.Context(), fp); err != nil || img.Type != incus.TypeVirtualMachine {
		t.Fatalf("imported image %s: %+v, %v; want type %s", fp, img, err, incus.TypeVirtualMachine)
	}

	owner := fmt.Sprintf("clivm-vm-test-%d", os.Getpid())
	r := runLane(t, cl, map[string]string{model.EnvImageAlias: alias, "JERICHOCI_OWNER": owner}, "demo-pass")
	prefix := "prepare node `prepare-hello-runner` failed before execute: image `" + alias +
		"` is a virtual-machine image, but the Incus server on localhost cannot run virtual machines: "
	msg := *r.rec.Jobs[0].Message
	if r.code != exitUsage || r.rec.Status != model.StatusFailed || !strings.HasPrefix(msg, prefix) {
		t.Fatalf("exit %d, run %s, message %q; want exit %d and the prefix %q", r.code, r.rec.Status, msg, exitUsage, prefix)
	}
	// The server's reason names what the host lacks.
	if !strings.Contains(msg, "/dev/kvm") && !strings.Contains(msg, "vhost_vsock") {
		t.Errorf("message %q names neither /dev/kvm nor vhost_vsock", msg)
	}
	t.Logf("message: %s", msg)
	insts, err := cl.ListInstances(context.WithoutCancel(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		if in.Config["user.jerichoci.owner"] == owner || strings.HasPrefix(in.Name, "jci-vm-probe-") {
			t.Errorf("instance %s left behind (owner %q)", in.Name, in.Config["user.jerichoci.owner"])
			_ = cl.DeleteInstance(context.WithoutCancel(t.Context()), in.Name)
		}
	}
}

// importVMImage imports the original's VM image layout, metadata.tar.xz
// and disk.qcow2 (an empty 64 MiB qcow2), under alias and returns its
// fingerprint; the alias and the image go with the test.
func importVMImage(t *testing.T, cl *incus.Client, qemuImg, alias string) string {
	t.Helper()
	dir := t.TempDir()
	meta := "architecture: x86_64\ncreation_date: 1\nproperties:\n  os: NixOS\n  description: jerichoci clivm test " + rand.Text() + "\n"
	if err := os.WriteFile(filepath.Join(dir, "metadata.yaml"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	tarxz := exec.CommandContext(t.Context(), "tar", "-C", dir, "-cJf", filepath.Join(dir, "metadata.tar.xz"), "metadata.yaml")
	if out, err := tarxz.CombinedOutput(); err != nil {
		testenv.Missing(t, "tar with xz makes metadata.tar.xz: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(dir, "metadata.yaml"))
	if out, err := exec.CommandContext(t.Context(), qemuImg, "create", "-q", "-f", "qcow2", filepath.Join(dir, "disk.qcow2"), "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	a, err := images.FindArtifact(dir)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := a.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		if err := cl.DeleteImageAlias(ctx, alias); err != nil {
			t.Error(err)
		}
		if img, err := cl.GetImage(ctx, fp); err == nil && len(img.Aliases) == 0 {
			if err := cl.DeleteImage(ctx, fp); err != nil {
				t.Error(err)
			}
		}
	})
	if _, err := images.Import(t.Context(), incus.NewImageStore(cl), a, alias, "jerichoci clivm test VM image"); err != nil {
		t.Fatalf("import the VM image: %v", err)
	}
	return fp
}

// TestE2EBlankProfileIsARecordedFailure: a blank
// PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE fails the job as the original's
// runtime plan does, recorded, before any instance exists.
func TestE2EBlankProfileIsARecordedFailure(t *testing.T) {
	cl := requireIncus(t)
	for _, profile := range []string{"", "  "} {
		owner := fmt.Sprintf("clivm-profile-test-%d", os.Getpid())
		r := runLane(t, cl, map[string]string{"PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE": profile, "JERICHOCI_OWNER": owner}, "demo-pass")
		const want = "build remote Incus runtime plan: runtime spec field `incus.profile` must be non-empty"
		j := r.rec.Jobs[0]
		if r.code != exitUsage || r.rec.Status != model.StatusFailed || j.Message == nil || *j.Message != want {
			t.Errorf("profile %q: exit %d, run %s, job %+v\nstderr:\n%s", profile, r.code, r.rec.Status, j, r.stderr)
		}
		insts, err := cl.ListInstances(context.WithoutCancel(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range insts {
			if in.Config["user.jerichoci.owner"] == owner {
				t.Errorf("instance %s left behind", in.Name)
			}
		}
	}
}
