package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

// The guest's state directory from the host (docs/INCUS.md, "Artifacts
// through a mounted directory"): in TransferMounts, a container gets a
// host directory of its own as GuestDir, writable by the guest's root
// only, where the runner writes its log, events, status and result; the
// host reads the four files there after the run, without a round trip
// to incusd. A hostile guest's root controls what is in it, so the host
// opens every name below the directory one component at a time with
// O_NOFOLLOW (no symlink on the way is followed), takes regular files
// only, and caps the small ones as the archive does.

// GuestIDMapper is what a backend offers to tell which host uid and gid
// an instance's root is (the Incus adapter reads the instance's idmap):
// the state directory is given to them.
type GuestIDMapper interface {
	GuestRootIDs(ctx context.Context, name string) (uid, gid int, err error)
}

// stateDeviceName is the state directory's disk device.
const stateDeviceName = "pk-state"

// mountedSecretEnvPath is where a job whose GuestDir is a host directory
// gets its secret environment: in the guest's own /run, never on the
// host's disk.
const mountedSecretEnvPath = "/run/jerichoci-secret-env.json"

// stateDirMounts reports whether instances of type itype get their state
// directory from the host: files through mounts, a container (a VM's
// virtiofs maps owners otherwise), a backend that tells the guest's ids,
// and only when cfg.StateDirMount asks for it.
func stateDirMounts(be Backend, cfg Config, itype model.InstanceType) bool {
	_, ok := be.(GuestIDMapper)
	return ok && cfg.StateDirMount && !cfg.Transfer.api() && itype == model.InstanceContainer
}

// makeStateDir makes dir, root's and closed to others until the guest's
// root gets it (ownStateDir); one that exists is a leftover and goes.
func makeStateDir(dir string) (Disk, error) {
	if err := os.RemoveAll(dir); err != nil {
		return Disk{}, fmt.Errorf("remove leftover state directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return Disk{}, fmt.Errorf("make state directory %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return Disk{}, fmt.Errorf("make state directory %s: %w", dir, err)
	}
	return Disk{Name: stateDeviceName, Source: dir, Path: GuestDir}, nil
}

// ownStateDir gives dir to the guest's root of instance name, before its
// runner starts, readable by the guest's other users as the runner's own
// GuestDir would be (the files in it are the runner's, 0600 or 0644).
func ownStateDir(ctx context.Context, be Backend, name, dir string) error {
	m, ok := be.(GuestIDMapper)
	if !ok {
		return fmt.Errorf("state directory of %s: the backend %T cannot tell the guest's ids", name, be)
	}
	uid, gid, err := m.GuestRootIDs(ctx, name)
	if err != nil {
		return fmt.Errorf("state directory of %s: %w", name, err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("give state directory %s to the guest's root (%d:%d): %w", dir, uid, gid, err)
	}
	// As the runner makes GuestDir in a guest of its own: 0755.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("open state directory %s to the guest: %w", dir, err)
	}
	return nil
}

// openBeneath opens name (slash-separated, below dir, no "..") for
// reading one component at a time with O_NOFOLLOW, so that no symlink on
// the way is followed, without blocking on a FIFO, and checks that it is
// a regular file.
func openBeneath(dir, name string) (*os.File, int64, error) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("open the state directory %s: %w", dir, err)
	}
	parts := strings.Split(name, "/")
	for i, part := range parts {
		if part == "" || part == "." || part == ".." {
			syscall.Close(fd)
			return nil, 0, fmt.Errorf("state directory: name %q is not plain", name)
		}
		flags := syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
		if i < len(parts)-1 {
			flags |= syscall.O_DIRECTORY
		} else {
			flags |= syscall.O_NONBLOCK
		}
		next, oerr := syscall.Openat(fd, part, flags, 0)
		syscall.Close(fd)
		if oerr != nil {
			fd, err = -1, oerr
			break
		}
		fd = next
	}
	if errors.Is(err, syscall.ENOENT) {
		return nil, 0, fmt.Errorf("%s: %w", GuestDir+"/"+name, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open %s in the state directory: %w", GuestDir+"/"+name, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, name))
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("guest path `%s` is not a regular file (%s)", GuestDir+"/"+name, fi.Mode().Type())
	}
	return f, fi.Size(), nil
}

// collectMounted collects the artifacts from the state directory, told as
// collectArchive tells them: guest.log masked to artifacts/guest.log
// (replacing the live one only once complete), the small files at most
// smallArtifactLimit each, result.json authoritative.
func (j *jobRun) collectMounted(artifacts string) (Result, error) {
	dir := j.stateDir
	if f, size, err := openBeneath(dir, "logs/guest.log"); err != nil {
		j.hostf("could not collect %s: %v", GuestDir+"/logs/guest.log", err)
	} else {
		// What the log held when opened: a process the job left behind
		// cannot keep the host reading.
		err := j.saveGuestLog(io.LimitReader(f, size), artifacts)
		f.Close()
		if err != nil {
			var hostErr *hostWriteError
			if errors.As(err, &hostErr) {
				return Result{}, hostErr.err
			}
			j.hostf("could not collect %s: %v", GuestDir+"/logs/guest.log", err)
		}
	}
	var result []byte
	for _, name := range []string{"events.jsonl", "status.json", "result.json"} {
		guestPath := GuestDir + "/" + name
		b, err := readSmall(dir, name)
		if err != nil {
			if name == "result.json" {
				return Result{}, fmt.Errorf("read Incus guest path `%s` from %s failed with %v", guestPath, j.x.Config.Host, err)
			}
			j.hostf("could not collect %s: %v", guestPath, err)
			continue
		}
		if err := atomicfile.WriteFile(filepath.Join(artifacts, name), j.job.Mask.Bytes(b), 0o644); err != nil {
			return Result{}, fmt.Errorf("save artifact %s: %w", name, err)
		}
		if name == "result.json" {
			result = b
		}
	}
	return j.terminal(result)
}

// readSmall reads one small artifact, refusing one over smallArtifactLimit.
func readSmall(dir, name string) ([]byte, error) {
	f, size, err := openBeneath(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > smallArtifactLimit {
		return nil, artifactTooLarge(name)
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(f, smallArtifactLimit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", GuestDir+"/"+name, err)
	}
	if n > smallArtifactLimit {
		return nil, artifactTooLarge(name)
	}
	return buf.Bytes(), nil
}
