package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrHostPathRefused is wrapped when a host_path source may not be used:
// retrying cannot help.
var ErrHostPathRefused = errors.New("host_path source refused")

// hostPathError is a refusal whose text stands alone.
type hostPathError struct{ msg string }

func (e *hostPathError) Error() string { return e.msg }
func (e *hostPathError) Unwrap() error { return ErrHostPathRefused }

func refuseHostPath(format string, args ...any) error {
	return &hostPathError{msg: fmt.Sprintf(format, args...)}
}

// kernelDirs are refused with everything under them, whatever the root.
var kernelDirs = []string{"/proc", "/sys", "/dev"}

// specialFilesystems are refused by their statfs magic (linux/magic.h).
var specialFilesystems = map[uint32]string{
	0x9fa0:     "proc",
	0x62656572: "sysfs",
	0x1cd1:     "devpts",
	0x27e0eb:   "cgroup",
	0x63677270: "cgroup2",
	0x64626720: "debugfs",
	0x74726163: "tracefs",
	0x73636673: "securityfs",
	0xcafe4a11: "bpf",
	0x6165676c: "pstore",
	0x62656570: "configfs",
	0xf97cff8c: "selinuxfs",
	0xde5e81e4: "efivarfs",
	0x42494e4d: "binfmt_misc",
	0x65735543: "fusectl",
}

// ResolveHostPath checks a host_path source against the daemon's
// --host-path-root and returns it with its symlinks resolved. It is refused
// (ErrHostPathRefused) when root is empty, when p is not an absolute path
// to an existing directory, when it resolves outside the resolved root, or
// to /proc, /sys, /dev or anything under them, or onto a kernel filesystem
// (proc, sysfs, cgroup, debugfs, …). A root that does not resolve is the
// daemon's problem: an error that is no refusal.
func ResolveHostPath(root, p string) (string, error) {
	if root == "" {
		return "", refuseHostPath("host_path sources are refused: this daemon was started without --host-path-root")
	}
	if !filepath.IsAbs(p) {
		return "", refuseHostPath("host_path %q: expected an absolute path", p)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("--host-path-root %q: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", refuseHostPath("host_path %q does not exist", p)
	case err != nil:
		return "", refuseHostPath("host_path %q: %v", p, err)
	}
	if !under(real, realRoot) {
		return "", refuseHostPath("host_path %q resolves to %q, outside --host-path-root %q", p, real, root)
	}
	for _, k := range kernelDirs {
		if under(real, k) {
			return "", refuseHostPath("host_path %q resolves to %q, under %s", p, real, k)
		}
	}
	info, err := os.Stat(real)
	if err != nil {
		return "", refuseHostPath("host_path %q: %v", p, err)
	}
	if !info.IsDir() {
		return "", refuseHostPath("host_path %q is not a directory", p)
	}
	fsName, err := specialFilesystem(real)
	if err != nil {
		return "", fmt.Errorf("host_path %q: %w", p, err)
	}
	if fsName != "" {
		return "", refuseHostPath("host_path %q resolves to %q, on a %s filesystem", p, real, fsName)
	}
	return real, nil
}

// under reports whether the clean absolute path p is dir or below it.
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// specialFilesystem names the kernel filesystem p is on, "" for another.
func specialFilesystem(p string) (string, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return "", fmt.Errorf("statfs %s: %w", p, err)
	}
	return specialFilesystems[uint32(st.Type)], nil
}
