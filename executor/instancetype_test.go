package executor

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"jerichoci/model"
)

func TestInstanceTypeResolution(t *testing.T) {
	tests := []struct {
		name     string
		vms      bool
		vmImage  bool
		want     model.InstanceType // job's instance type; "" = auto
		got      model.InstanceType
		hostLine string
	}{
		{"auto, no VMs, container image", false, false, "", model.InstanceContainer, "cannot run virtual machines (vhost_vsock kernel module not loaded); using a container"},
		{"auto, VMs, container image", true, false, "", model.InstanceContainer, "image `pikaci/dev` is a container image; using a container"},
		{"auto, VMs, VM image", true, true, "", model.InstanceVirtualMachine, "runs virtual machines and image `pikaci/dev` is a VM image; using a virtual machine"},
		{"virtual-machine, VMs, VM image", true, true, model.InstanceVirtualMachine, model.InstanceVirtualMachine, ""},
		{"container", true, false, model.InstanceContainer, model.InstanceContainer, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult, vms: tc.vms, vmImage: tc.vmImage}
			var log syncBuf
			job := newJob(t, &log)
			if tc.want != "" {
				job.Runtime.Incus.InstanceType = tc.want
			}
			if _, err := (&RemoteLinuxVM{Backend: be, Config: DefaultConfig()}).Execute(t.Context(), job); err != nil {
				t.Fatal(err)
			}
			if be.created[0].Type != tc.got {
				t.Errorf("created a %s, want %s", be.created[0].Type, tc.got)
			}
			if tc.hostLine != "" && !strings.Contains(log.String(), tc.hostLine) {
				t.Errorf("host log lacks %q:\n%s", tc.hostLine, log.String())
			}
		})
	}
}

func TestRootDiskAndGuestAPI(t *testing.T) {
	tests := []struct {
		name      string
		size      string
		root      RootDisk
		rootErr   error
		wantErr   string
		wantHost  string // a host.log line, or "" for no storage line
		wantCalls int
	}{
		{name: "btrfs enforces the size", size: "20GiB", root: RootDisk{Device: "root", Pool: "fast", Driver: "btrfs"}, wantCalls: 1},
		{name: "dir does not", size: "8GiB", root: RootDisk{Device: "rootfs", Pool: "default", Driver: "dir"}, wantCalls: 1,
			wantHost: "[pikaci] storage pool default (dir) cannot enforce the guest disk size 8GiB\n"},
		{name: "no size, no override", size: "", wantCalls: 0},
		{name: "lookup fails", size: "20GiB", rootErr: fmt.Errorf("profile %q: %w", "pika-agent-dev", ErrNotFound), wantCalls: 1,
			wantErr: "look up the root disk of profiles [\"default\" \"pika-agent-dev\"] in project `pika-managed-agents`: profile \"pika-agent-dev\": not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult, root: tc.root, rootErr: tc.rootErr}
			var log syncBuf
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
			x.Config.RootDiskSize = tc.size
			_, err := x.Execute(t.Context(), newJob(t, &log))
			if be.rootCalls != tc.wantCalls {
				t.Errorf("RootDisk called %d times, want %d", be.rootCalls, tc.wantCalls)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrNotFound) {
					t.Fatalf("error = %v, want %q wrapping ErrNotFound", err, tc.wantErr)
				}
				if len(be.created) != 0 || len(be.deleted) != 0 {
					t.Errorf("created %d and deleted %v after a failed lookup", len(be.created), be.deleted)
				}
				if exe := ExecutionOf(err); exe == nil || len(exe.Phases) != 3 || exe.Phases[2].Phase != model.PhasePrepareRuntime {
					t.Errorf("execution = %+v, want it to end in prepare_runtime", exe)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			spec := be.created[0]
			if spec.RootDiskSize != tc.size || spec.RootDisk != tc.root || spec.Config["security.guestapi"] != "false" {
				t.Errorf("spec root disk %+v size %q, guest API %q; want %+v, %q, false", spec.RootDisk, spec.RootDiskSize,
					spec.Config["security.guestapi"], tc.root, tc.size)
			}
			hl := log.String()
			if tc.wantHost != "" && !strings.Contains(hl, tc.wantHost) {
				t.Errorf("host log lacks %q:\n%s", tc.wantHost, hl)
			}
			if tc.wantHost == "" && strings.Contains(hl, "cannot enforce") {
				t.Errorf("host log has a storage line:\n%s", hl)
			}
		})
	}
}
