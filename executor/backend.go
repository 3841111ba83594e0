package executor

import (
	"context"
	"errors"
	"io"
	"os"

	"jerichoci/model"
)

// Backend is what the executor needs from an instance manager; the Incus
// adapter in executor/incus implements it. A Backend addresses one Incus
// project, the one it was made for: its calls name no project, and
// Config.Project only names that project in messages and records. Every
// call takes a context.
type Backend interface {
	// Image returns the image an alias points at, or an error wrapping
	// ErrNotFound.
	Image(ctx context.Context, alias string) (ImageInfo, error)
	// VirtualMachines reports whether the server can run VMs and, when it
	// cannot, the server's reason.
	VirtualMachines(ctx context.Context) (ok bool, reason string, err error)
	// CreateInstance creates and starts an instance.
	CreateInstance(ctx context.Context, spec InstanceSpec) error
	// SetInstanceConfig sets config keys of an instance ("" unsets one).
	SetInstanceConfig(ctx context.Context, name string, config map[string]string) error
	// DeleteInstance force-stops and deletes an instance; a missing one is
	// already deleted and not an error.
	DeleteInstance(ctx context.Context, name string) error
	// Exec runs a command in the instance, passing its output to the
	// writers while it runs, and returns its exit code. A non-zero exit is
	// not an error.
	Exec(ctx context.Context, name string, req ExecRequest, stdout, stderr io.Writer) (int, error)
	// PushFile writes a file into the instance, creating parent directories.
	PushFile(ctx context.Context, name, path string, data []byte, uid, gid int, mode os.FileMode) error
	// PullFile copies a file from the instance to w as it comes, without
	// holding it in memory, and returns the number of bytes written. A
	// positive limit caps the file's size: a larger file is an error naming
	// the file and the limit, after at most limit bytes reached w; limit <= 0
	// means no limit. A missing file wraps ErrNotFound.
	PullFile(ctx context.Context, name, path string, w io.Writer, limit int64) (int64, error)
	// RootDisk returns the root disk device (type disk, path /) that the
	// profiles, applied in order, give an instance: the last profile with
	// one wins. The answer may be cached.
	RootDisk(ctx context.Context, profiles []string) (RootDisk, error)
}

// ErrNotFound is wrapped by backend errors for missing objects.
var ErrNotFound = errors.New("not found")

// ImageInfo is what the executor needs to know of an image.
type ImageInfo struct {
	Fingerprint string             // full
	Type        model.InstanceType // container or virtual-machine
}

// InstanceSpec describes an instance to create and start.
type InstanceSpec struct {
	Name     string
	Type     model.InstanceType // container or virtual-machine, never auto
	Alias    string             // image alias, as given
	Profiles []string
	Config   map[string]string
	Disks    []Disk
	// RootDiskSize, when set, gives the instance its own root disk device
	// of that size (an Incus size: 20GiB, 512MiB, bytes), overriding
	// RootDisk, the device of the profiles. A RootDisk without a pool is
	// looked up by the backend.
	RootDiskSize string
	RootDisk     RootDisk
	// Network, when set, is the managed network of the instance's one NIC,
	// eth0, with MAC, IPv4 and IPv6 filtering and port isolation; the
	// profiles' NICs are left out. "" keeps the profiles' NICs.
	Network string
}

// RootDisk is the root disk device of an instance's profiles.
type RootDisk struct {
	Device string // the device's name, usually "root"
	Pool   string // the storage pool
	Driver string // the pool's storage driver: dir, btrfs, zfs, lvm …
}

// Disk is a host directory shown in the guest.
type Disk struct {
	Name     string
	Source   string // host path
	Path     string // guest path
	ReadOnly bool
}

// ExecRequest is a command to run in an instance.
type ExecRequest struct {
	Command []string
	Env     map[string]string
	Cwd     string
	UID     int
	GID     int
}
