package executor

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"jerichoci/model"
)

// instanceSpec is an instance of the executor's profiles, limits,
// root disk and fleet, without a job's keys or disks.
func instanceSpec(ctx context.Context, be Backend, cfg Config, name string, itype model.InstanceType, alias string) (InstanceSpec, error) {
	profiles := cfg.profiles()
	spec := InstanceSpec{
		Name: name, Type: itype, Alias: alias, Profiles: profiles,
		Config: map[string]string{
			"limits.cpu": "2", "limits.memory": "4096MiB",
			// No /dev/incus in the guest: a job cannot talk to incusd
			// through the guest API.
			"security.guestapi": "false",
		},
		RootDiskSize: cfg.RootDiskSize,
	}
	guestIsolation(&spec, cfg)
	if cfg.Fleet != "" {
		spec.Config[ConfigFleet] = cfg.Fleet
	}
	if cfg.Process != "" {
		spec.Config[ConfigProcess] = cfg.Process
	}
	if cfg.RootDiskSize != "" {
		root, err := be.RootDisk(ctx, profiles)
		if err != nil {
			return spec, fmt.Errorf("look up the root disk of profiles %q in project `%s`: %w", profiles, cfg.Project, err)
		}
		spec.RootDisk = root
	}
	return spec, nil
}

// instanceType resolves the instance type: auto takes a VM where the server
// runs VMs and the image is a VM image, else a container, and says why in
// the host log; an explicit type must fit both the server and the image.
func (j *jobRun) instanceType(ctx context.Context, alias string, imageType model.InstanceType) (model.InstanceType, error) {
	want := j.x.wantType(j.job)
	if want == model.InstanceContainer {
		if imageType != model.InstanceContainer {
			return "", fmt.Errorf("instance type `container` was asked for, but image `%s` is a %s image", alias, imageType)
		}
		return want, nil
	}
	vms, reason, err := j.x.Backend.VirtualMachines(ctx)
	if err != nil {
		return "", fmt.Errorf("ask the Incus server which instance types it runs: %w", err)
	}
	switch {
	case !vms && (want == model.InstanceVirtualMachine || imageType == model.InstanceVirtualMachine):
		return "", j.x.noVMs(want, alias, imageType, reason)
	case want == model.InstanceVirtualMachine && imageType != model.InstanceVirtualMachine:
		return "", fmt.Errorf("instance type `virtual-machine` was asked for, but image `%s` is a %s image", alias, imageType)
	case imageType == model.InstanceVirtualMachine:
		if want != model.InstanceVirtualMachine {
			j.hostf("instance type auto: this Incus server runs virtual machines and image `%s` is a VM image; using a virtual machine", alias)
		}
		return model.InstanceVirtualMachine, nil
	case vms:
		j.hostf("instance type auto: image `%s` is a container image; using a container", alias)
	default:
		j.hostf("instance type auto: this Incus server cannot run virtual machines (%s); using a container", reason)
	}
	j.log.Info("instance type auto resolved to container", zap.String("image_type", string(imageType)), zap.Bool("server_runs_vms", vms))
	return model.InstanceContainer, nil
}

// wantType is the instance type a job asks for: its own, else the
// executor's.
func (x *RemoteLinuxVM) wantType(job Job) model.InstanceType {
	if in := job.Runtime.Incus; in != nil && in.InstanceType != "" && in.InstanceType != model.InstanceAuto {
		return in.InstanceType
	}
	return x.Config.InstanceType
}

// vmRefused is the runner prepare node's check (docs/INCUS.md, "Virtual
// machines"): a job that needs a virtual machine, because it asks for one
// or its image is a VM image, fails before anything is created when the
// server cannot run them, with the server's own reason (such as "KVM
// support is missing (no /dev/kvm)").
func (x *RemoteLinuxVM) vmRefused(ctx context.Context, job Job, img ImageInfo) error {
	want := x.wantType(job)
	if want == model.InstanceContainer || (want != model.InstanceVirtualMachine && img.Type != model.InstanceVirtualMachine) {
		return nil
	}
	vms, reason, err := x.Backend.VirtualMachines(ctx)
	if err != nil {
		return fmt.Errorf("ask the Incus server which instance types it runs: %w", err)
	}
	if vms {
		return nil
	}
	return x.noVMs(want, job.Image.Alias, img.Type, reason)
}

// noVMs is the refusal of a job that needs a virtual machine on a server
// that cannot run them, naming what the server lacks.
func (x *RemoteLinuxVM) noVMs(want model.InstanceType, alias string, imageType model.InstanceType, reason string) error {
	if want != model.InstanceVirtualMachine && imageType == model.InstanceVirtualMachine {
		return fmt.Errorf("image `%s` is a virtual-machine image, but the Incus server on %s cannot run virtual machines: %s (run it on a host with KVM and vhost_vsock, or import a container image under that alias)",
			alias, x.Config.Host, reason)
	}
	return fmt.Errorf("instance type `%s` needs a virtual machine, but the Incus server on %s cannot run virtual machines: %s (use a container image with instance type `container` or `auto`)",
		want, x.Config.Host, reason)
}
