package incus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"jerichoci/executor"
	"jerichoci/model"
)

// Backend adapts a Client to executor.Backend. Calls name their project;
// the Backend keeps one Client per project over the same connection pool.
type Backend struct {
	c        *Client
	mu       sync.Mutex
	projects map[string]*Client

	vmMu     sync.Mutex
	vmKnown  bool
	vmOK     bool
	vmReason string
}

var _ executor.Backend = (*Backend)(nil)

// NewBackend returns an executor backend over c.
func NewBackend(c *Client) *Backend {
	return &Backend{c: c, projects: map[string]*Client{c.project: c}}
}

// in returns a client addressing project, sharing c's transport.
func (b *Backend) in(project string) *Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cl, ok := b.projects[project]; ok {
		return cl
	}
	cl := *b.c
	cl.project = project
	b.projects[project] = &cl
	return &cl
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
func (b *Backend) Image(ctx context.Context, project, alias string) (executor.ImageInfo, error) {
	a, err := b.in(project).GetImageAlias(ctx, alias)
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

// CreateInstance creates and starts an instance from an image alias.
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
	return b.in(spec.Project).CreateInstance(ctx, InstancesPost{
		Name: spec.Name, Type: string(spec.Type), Source: InstanceSource{Type: "image", Alias: spec.Alias},
		Config: spec.Config, Devices: devices, Profiles: spec.Profiles, Start: true,
	})
}

// DeleteInstance force-stops and deletes; a missing instance is done.
func (b *Backend) DeleteInstance(ctx context.Context, project, name string) error {
	return b.in(project).DeleteInstance(ctx, name)
}

// Exec runs a command and follows its output live.
func (b *Backend) Exec(ctx context.Context, project, name string, req executor.ExecRequest, stdout, stderr io.Writer) (int, error) {
	return b.in(project).Exec(ctx, name, ExecRequest{Command: req.Command, Env: req.Env, Cwd: req.Cwd,
		User: uint32(req.UID), Group: uint32(req.GID)}, stdout, stderr)
}

// PushFile writes a file, creating its parent directories first.
func (b *Backend) PushFile(ctx context.Context, project, name, guestPath string, data []byte, uid, gid int, mode os.FileMode) error {
	cl := b.in(project)
	if err := cl.MkdirAll(ctx, name, path.Dir(guestPath), FileOwner{UID: 0, GID: 0, Mode: 0o755}); err != nil {
		return err
	}
	return cl.PushFile(ctx, name, guestPath, bytes.NewReader(data), FileOwner{UID: uid, GID: gid, Mode: mode})
}

// PullFile reads a file from the instance.
func (b *Backend) PullFile(ctx context.Context, project, name, guestPath string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := b.in(project).PullFile(ctx, name, guestPath, &buf); err != nil {
		return nil, notFound(err)
	}
	return buf.Bytes(), nil
}
