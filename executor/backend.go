package executor

import (
	"context"
	"errors"
	"io"
	"os"

	"jerichoci/model"
)

// Backend is what the executor needs from an instance manager; the Incus
// adapter in executor/incus implements it. Every call takes a context.
type Backend interface {
	// Image returns the image an alias points at in project, or an error
	// wrapping ErrNotFound.
	Image(ctx context.Context, project, alias string) (ImageInfo, error)
	// VirtualMachines reports whether the server can run VMs and, when it
	// cannot, the server's reason.
	VirtualMachines(ctx context.Context) (ok bool, reason string, err error)
	// CreateInstance creates and starts an instance.
	CreateInstance(ctx context.Context, spec InstanceSpec) error
	// DeleteInstance force-stops and deletes an instance; a missing one is
	// already deleted and not an error.
	DeleteInstance(ctx context.Context, project, name string) error
	// Exec runs a command in the instance, passing its output to the
	// writers while it runs, and returns its exit code. A non-zero exit is
	// not an error.
	Exec(ctx context.Context, project, name string, req ExecRequest, stdout, stderr io.Writer) (int, error)
	// PushFile writes a file into the instance, creating parent directories.
	PushFile(ctx context.Context, project, name, path string, data []byte, uid, gid int, mode os.FileMode) error
	// PullFile reads a file from the instance; a missing file wraps ErrNotFound.
	PullFile(ctx context.Context, project, name, path string) ([]byte, error)
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
	Project  string
	Name     string
	Type     model.InstanceType // container or virtual-machine, never auto
	Alias    string             // image alias, as given
	Profiles []string
	Config   map[string]string
	Disks    []Disk
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
