package incus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"jerichoci/executor"
	"jerichoci/model"
)

// Backend adapts a Client to executor.Backend, in the Client's project:
// every call addresses that one project (docs/INCUS.md).
type Backend struct {
	c *Client

	vmMu     sync.Mutex
	vmKnown  bool
	vmOK     bool
	vmReason string

	rootMu sync.Mutex
	roots  map[string]executor.RootDisk // by profiles

	nicMu sync.Mutex
	nics  map[string][]string // the profiles' NIC device names, by profiles
}

var _ executor.Backend = (*Backend)(nil)

// NewBackend returns an executor backend over c, bound to c's project
// (WithProject): the project jerichoci's config names.
func NewBackend(c *Client) *Backend {
	return &Backend{c: c, roots: map[string]executor.RootDisk{}, nics: map[string][]string{}}
}

// notFound marks 404s as executor.ErrNotFound, keeping the message and chain.
func notFound(err error) error {
	if err != nil && IsNotFound(err) {
		return notFoundError{err}
	}
	return err
}

type notFoundError struct{ error }

func (e notFoundError) Is(target error) bool { return target == executor.ErrNotFound }
func (e notFoundError) Unwrap() error        { return e.error }

// Image resolves an alias to its image's full fingerprint and type.
func (b *Backend) Image(ctx context.Context, alias string) (executor.ImageInfo, error) {
	a, err := b.c.GetImageAlias(ctx, alias)
	if err != nil {
		return executor.ImageInfo{}, notFound(err)
	}
	t := model.InstanceType(a.Type)
	if t == "" {
		t = model.InstanceContainer
	}
	return executor.ImageInfo{Fingerprint: a.Target, Type: t}, nil
}

// vmUnsupported is how the server words its refusal of a VM.
const vmUnsupported = `Instance type "virtual-machine" is not supported on this server: `

// VirtualMachines reports whether the server can run VMs. When its driver
// list lacks qemu, the server's own reason is learnt from a create request
// it must refuse (an empty VM, source none); the answer is kept for the
// life of the Backend.
func (b *Backend) VirtualMachines(ctx context.Context) (bool, string, error) {
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	if !b.vmKnown {
		ok, reason, err := b.probeVMs(ctx)
		if err != nil {
			return false, "", err // a failed probe is tried again next time
		}
		b.vmKnown, b.vmOK, b.vmReason = true, ok, reason
	}
	return b.vmOK, b.vmReason, nil
}

func (b *Backend) probeVMs(ctx context.Context) (bool, string, error) {
	s, err := b.c.Server(ctx)
	if err != nil {
		return false, "", err
	}
	if s.Supports(TypeVirtualMachine) {
		return true, "", nil
	}
	reason := fmt.Sprintf("the server's drivers are %q, without qemu", s.Environment.Driver)
	name := fmt.Sprintf("jci-vm-probe-%d", time.Now().UnixNano())
	err = b.c.CreateInstance(ctx, InstancesPost{Name: name, Type: TypeVirtualMachine, Source: InstanceSource{Type: "none"}})
	if err == nil {
		// Not expected where the driver list lacks qemu; clean up and believe it.
		_ = b.c.DeleteInstance(context.WithoutCancel(ctx), name)
		return true, "", nil
	}
	if i := strings.Index(err.Error(), vmUnsupported); i >= 0 {
		reason = strings.TrimSpace(err.Error()[i+len(vmUnsupported):])
	}
	return false, reason, nil
}

// CreateInstance creates and starts an instance from an image alias. With
// a RootDiskSize, the instance gets its own full root disk device, in
// place of the profiles' one (same name, same pool) but of that size.
// Incus enforces the size on btrfs, zfs and lvm pools; a dir pool accepts
// it and does not enforce it (checked by hand on Incus 6.0.4 with `incus
// launch … -d root,size=2GiB`).
func (b *Backend) CreateInstance(ctx context.Context, spec executor.InstanceSpec) error {
	devices := map[string]map[string]string{}
	for _, d := range spec.Disks {
		dev := map[string]string{"type": "disk", "source": d.Source, "path": d.Path, "shift": "false"}
		if d.ReadOnly {
			dev["readonly"] = "true"
		}
		if spec.Type == model.InstanceVirtualMachine {
			dev["io.bus"] = "virtiofs" // VM-only: a container refuses it
		}
		devices[d.Name] = dev
	}
	if spec.RootDiskSize != "" {
		root := spec.RootDisk
		if root.Pool == "" {
			var err error
			if root, err = b.RootDisk(ctx, spec.Profiles); err != nil {
				return fmt.Errorf("incus: create instance %q: %w", spec.Name, err)
			}
		}
		if root.Device == "" {
			root.Device = "root"
		}
		devices[root.Device] = map[string]string{"type": "disk", "path": "/", "pool": root.Pool, "size": spec.RootDiskSize}
	}
	if spec.Network != "" {
		if err := b.guestNIC(ctx, spec, devices); err != nil {
			return fmt.Errorf("incus: create instance %q: %w", spec.Name, err)
		}
	}
	return b.c.CreateInstance(ctx, InstancesPost{
		Name: spec.Name, Type: string(spec.Type), Source: InstanceSource{Type: "image", Alias: spec.Alias},
		Config: spec.Config, Devices: devices, Profiles: spec.Profiles, Start: true,
	})
}

// SetInstanceConfig sets config keys of an instance.
func (b *Backend) SetInstanceConfig(ctx context.Context, name string, config map[string]string) error {
	return b.c.SetInstanceConfig(ctx, name, config)
}

// DeleteInstance force-stops and deletes; a missing instance is done.
func (b *Backend) DeleteInstance(ctx context.Context, name string) error {
	return b.c.DeleteInstance(ctx, name)
}

// DeleteRunningInstance force-stops an instance known to run, then
// deletes it as DeleteInstance does: one call less than a delete that
// incusd 6.0 refuses first because the instance runs (it has no forced
// delete). A failed stop is left to DeleteInstance's own handling.
func (b *Backend) DeleteRunningInstance(ctx context.Context, name string) error {
	_ = b.c.ForceStopInstance(ctx, name)
	return b.c.DeleteInstance(ctx, name)
}

// Exec runs a command and follows its output live.
func (b *Backend) Exec(ctx context.Context, name string, req executor.ExecRequest, stdout, stderr io.Writer) (int, error) {
	return b.c.Exec(ctx, name, ExecRequest{Command: req.Command, Env: req.Env, Cwd: req.Cwd,
		User: uint32(req.UID), Group: uint32(req.GID)}, stdout, stderr)
}

// PushFile writes a file, creating its parent directories first.
func (b *Backend) PushFile(ctx context.Context, name, guestPath string, data []byte, uid, gid int, mode os.FileMode) error {
	cl := b.c
	if err := cl.MkdirAll(ctx, name, path.Dir(guestPath), FileOwner{UID: 0, GID: 0, Mode: 0o755}); err != nil {
		return err
	}
	return cl.PushFile(ctx, name, guestPath, bytes.NewReader(data), FileOwner{UID: uid, GID: gid, Mode: mode})
}

// PullFile streams a file from the instance to w; a positive limit caps
// its size.
func (b *Backend) PullFile(ctx context.Context, name, guestPath string, w io.Writer, limit int64) (int64, error) {
	lw := &limitWriter{w: w, limit: limit}
	if _, err := b.c.PullFile(ctx, name, guestPath, lw); err != nil {
		return lw.n, notFound(err)
	}
	return lw.n, nil
}

// limitWriter counts what it passes to w and fails the write that would
// take it past a positive limit, after passing what fits.
type limitWriter struct {
	w     io.Writer
	limit int64
	n     int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	var over bool
	if l.limit > 0 && l.n+int64(len(p)) > l.limit {
		p, over = p[:l.limit-l.n], true
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	if err == nil && over {
		err = fmt.Errorf("file is larger than the limit of %d bytes", l.limit)
	}
	return n, err
}

// RootDisk returns the root disk device (type disk, path /) that the
// profiles give an instance, the last profile with one winning, and its
// pool's driver. The answer is kept per profiles for the life of the
// Backend (a changed profile is seen after a restart); a failed lookup is
// tried again next time.
func (b *Backend) RootDisk(ctx context.Context, profiles []string) (executor.RootDisk, error) {
	b.rootMu.Lock()
	defer b.rootMu.Unlock()
	key := strings.Join(profiles, "\x00")
	if d, ok := b.roots[key]; ok {
		return d, nil
	}
	d, err := b.lookupRootDisk(ctx, profiles)
	if err != nil {
		return executor.RootDisk{}, err
	}
	b.roots[key] = d
	return d, nil
}

// PoolSpace returns the used and total bytes of a storage pool (pools
// belong to no project).
func (b *Backend) PoolSpace(ctx context.Context, pool string) (executor.PoolSpace, error) {
	r, err := b.c.GetStoragePoolResources(ctx, pool)
	if err != nil {
		return executor.PoolSpace{}, notFound(err)
	}
	return executor.PoolSpace{Used: r.Space.Used, Total: r.Space.Total}, nil
}

func (b *Backend) lookupRootDisk(ctx context.Context, profiles []string) (executor.RootDisk, error) {
	cl, project := b.c, b.c.project
	var root executor.RootDisk
	for _, name := range profiles {
		p, err := cl.GetProfile(ctx, name)
		if err != nil {
			return executor.RootDisk{}, notFound(err)
		}
		devs := slices.Sorted(maps.Keys(p.Devices))
		for _, dev := range devs {
			if d := p.Devices[dev]; d["type"] == "disk" && d["path"] == "/" {
				root = executor.RootDisk{Device: dev, Pool: d["pool"]}
				break
			}
		}
	}
	switch {
	case root.Device == "":
		return executor.RootDisk{}, fmt.Errorf("incus: profiles %q in project %q have no root disk device (type disk, path /)", profiles, project)
	case root.Pool == "":
		return executor.RootDisk{}, fmt.Errorf("incus: root disk device %q of profiles %q in project %q names no pool", root.Device, profiles, project)
	}
	pool, err := cl.GetStoragePool(ctx, root.Pool)
	if err != nil {
		return executor.RootDisk{}, notFound(err)
	}
	root.Driver = pool.Driver
	return root, nil
}
