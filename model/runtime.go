package model

import "fmt"

// RuntimeKind says where a job's command runs.
type RuntimeKind string

// Runtime kinds (docs/CONTRACTS.md, "Record rules").
const (
	RuntimeHostProcess RuntimeKind = "host_process"
	RuntimeIncus       RuntimeKind = "incus"
	RuntimeTart        RuntimeKind = "tart"
)

// InstanceType is the Incus instance type a job asks for.
type InstanceType string

// Instance types. Auto takes a VM where the server runs VMs, else a container.
const (
	InstanceAuto           InstanceType = "auto"
	InstanceVirtualMachine InstanceType = "virtual-machine"
	InstanceContainer      InstanceType = "container"
)

// Valid reports whether t is a known instance type.
func (t InstanceType) Valid() bool {
	switch t {
	case InstanceAuto, InstanceVirtualMachine, InstanceContainer:
		return true
	}
	return false
}

// RuntimeConfig is a job's runtime: an Incus guest or a host process.
type RuntimeConfig struct {
	Kind  RuntimeKind   `json:"kind"`
	Incus *IncusRuntime `json:"incus,omitempty"`
}

// IncusRuntime configures an Incus job.
type IncusRuntime struct {
	GuestRole    IncusGuestRole `json:"guest_role"`
	InstanceType InstanceType   `json:"instance_type,omitempty"`
}

// IncusRuntimeFor is the runtime of every CI catalog job: role pikaci-runner.
func IncusRuntimeFor(role IncusGuestRole) RuntimeConfig {
	return RuntimeConfig{Kind: RuntimeIncus, Incus: &IncusRuntime{GuestRole: role, InstanceType: InstanceAuto}}
}

// HostProcessRuntime is the runtime of host-local jobs.
func HostProcessRuntime() RuntimeConfig { return RuntimeConfig{Kind: RuntimeHostProcess} }

// IsIncus reports whether the runtime is an Incus guest.
func (r RuntimeConfig) IsIncus() bool { return r.Kind == RuntimeIncus }

// IncusImage is the outcome of role and alias resolution for one job.
type IncusImage struct {
	Role  IncusGuestRole // the role in effect
	Alias string         // the alias in effect, as it goes to Incus (not trimmed)
	// Recorded is the role written to the image record: Role when Alias is
	// its default alias, otherwise nil.
	Recorded *IncusGuestRole
}

// ResolveIncusImage applies the original's rules for one job:
// PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE (trimmed; empty means unset) wins
// over the job's runtime config; PIKACI_REMOTE_LINUX_VM_INCUS_IMAGE_ALIAS is
// used verbatim, else the role's default alias. A role for a non-Incus job is
// an error.
func ResolveIncusImage(env LookupEnv, jobID string, rt RuntimeConfig) (IncusImage, error) {
	envRole, fromEnv, err := GuestRoleFromEnv(env)
	if err != nil {
		return IncusImage{}, err
	}
	if !rt.IsIncus() {
		if fromEnv {
			return IncusImage{}, fmt.Errorf("remote Incus guest role requested for non-Incus job `%s`", jobID)
		}
		return IncusImage{}, fmt.Errorf("job `%s` has runtime %q, not %q", jobID, rt.Kind, RuntimeIncus)
	}
	role := envRole
	if !fromEnv {
		if rt.Incus == nil || !rt.Incus.GuestRole.Valid() {
			return IncusImage{}, fmt.Errorf("job `%s`: runtime field `incus.guest_role` must be `managed-openclaw` or `pikaci-runner`", jobID)
		}
		role = rt.Incus.GuestRole
	}
	alias := ImageAliasFor(env, role)
	return IncusImage{Role: role, Alias: alias, Recorded: RecordedGuestRole(role, alias)}, nil
}
