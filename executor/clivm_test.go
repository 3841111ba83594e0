package executor

import (
	"strings"
	"testing"

	"jerichoci/model"
)

// TestPrepareRunnerVirtualMachines: the runner prepare node refuses a job
// that needs a virtual machine on a server that cannot run them, before
// anything is created.
func TestPrepareRunnerVirtualMachines(t *testing.T) {
	tests := []struct {
		name     string
		vms      bool               // the server runs VMs
		vmImage  bool               // the alias is a VM image
		itype    model.InstanceType // the executor's; "" is auto
		jobType  model.InstanceType // the job's own
		wantErr  string
		wantHost string // in the host log when it passes
	}{
		{name: "VM image, no VMs", vmImage: true,
			wantErr: "image `pikaci/dev` is a virtual-machine image, but the Incus server on localhost cannot run virtual machines: vhost_vsock kernel module not loaded (run it on a host with KVM and vhost_vsock, or import a container image under that alias)"},
		{name: "VM asked for, no VMs", itype: model.InstanceVirtualMachine,
			wantErr: "instance type `virtual-machine` needs a virtual machine, but the Incus server on localhost cannot run virtual machines: vhost_vsock kernel module not loaded (use a container image with instance type `container` or `auto`)"},
		{name: "the job asks for a VM, no VMs", vmImage: true, itype: model.InstanceContainer, jobType: model.InstanceVirtualMachine,
			wantErr: "instance type `virtual-machine` needs a virtual machine"},
		{name: "VM image, the server runs VMs", vmImage: true, vms: true, wantHost: "Incus image `pikaci/dev` is available"},
		{name: "container image, no VMs", wantHost: "Incus image `pikaci/dev` is available"},
		// The mismatch is the job's own error, when it resolves its type.
		{name: "container asked for, VM image", vmImage: true, itype: model.InstanceContainer, wantHost: "is available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, vms: tc.vms, vmImage: tc.vmImage}
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
			if tc.itype != "" {
				x.Config.InstanceType = tc.itype
			}
			var log syncBuf
			job := newJob(t, &log)
			if tc.jobType != "" {
				in := *job.Runtime.Incus
				in.InstanceType = tc.jobType
				job.Runtime.Incus = &in
			}
			err := x.PrepareRunner(t.Context(), job)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Fatalf("PrepareRunner() = %v, want %q", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Fatalf("PrepareRunner() = %v", err)
			case tc.wantErr == "" && !strings.Contains(log.String(), tc.wantHost):
				t.Errorf("host log:\n%s\nwant %q", log.String(), tc.wantHost)
			}
			if len(be.created) != 0 || len(be.deleted) != 0 {
				t.Errorf("created %d, deleted %q: the prepare node touches no instance", len(be.created), be.deleted)
			}
		})
	}
}

// TestBlankProfileFailsTheJob: as the original's runtime plan, a blank
// profile fails the job before any instance is touched.
func TestBlankProfileFailsTheJob(t *testing.T) {
	const want = "build remote Incus runtime plan: runtime spec field `incus.profile` must be non-empty"
	for _, profile := range []string{"", " ", "\t\n"} {
		t.Run("profile "+strings.ReplaceAll(profile, "\n", `\n`), func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
			x.Config.Profile = profile
			var log syncBuf
			_, err := x.Execute(t.Context(), newJob(t, &log))
			if err == nil || err.Error() != want {
				t.Fatalf("Execute() = %v, want %q", err, want)
			}
			if len(be.created) != 0 || len(be.deleted) != 0 {
				t.Errorf("created %d, deleted %q; want no instance touched", len(be.created), be.deleted)
			}
		})
	}
	t.Run("a profile runs", func(t *testing.T) {
		be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
		x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
		var log syncBuf
		if _, err := x.Execute(t.Context(), newJob(t, &log)); err != nil {
			t.Fatal(err)
		}
		if len(be.created) != 1 || strings.Join(be.created[0].Profiles, ",") != "default,pika-agent-dev" {
			t.Errorf("created %+v", be.created)
		}
	})
}
