package executor

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// StoreClosure asks the Nix store for the closure of store paths: every
// path they refer to, transitively, themselves included. nixbuild.Builder
// is one; the command it runs goes to log.
type StoreClosure interface {
	Closure(ctx context.Context, paths []string, log io.Writer) ([]string, error)
}

// storeBaseName is the name of a store path below the store directory:
// 32 characters of Nix's base-32 hash, a dash and a name of Nix's
// allowed characters.
var storeBaseName = regexp.MustCompile(`^[0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-._?=]+$`)

// closureDevicePrefix starts the device name of each closure path: with
// the path's 32-character hash it is 39 characters, longer than any
// payload device name (at most 20), so the two never collide.
const closureDevicePrefix = "pk-nix-"

// storeDir is the host's Nix store directory (RemoteLinuxVM.NixStoreDir).
func (x *RemoteLinuxVM) storeDir() string {
	if x.NixStoreDir != "" {
		return x.NixStoreDir
	}
	return NixStoreGuestPath
}

// closureDisks are the read-only disks that show a staged job's guest
// the closure of its staged outputs (roots) at /nix/store and nothing
// else of the host's store: one disk device per store path. Incus
// resolves a disk's source through symlinks on the host, so a store
// path that is a symlink is shown as what it resolves to, which must lie
// within the closure; a payload mount (sources, resolved) must too.
// Anything else fails the job before an instance exists.
func (j *jobRun) closureDisks(ctx context.Context, roots, sources []string) ([]Disk, error) {
	if j.x.Store == nil {
		return nil, fmt.Errorf("staged outputs %s: no Nix store to ask for their closure (RemoteLinuxVM.Store is unset)", strings.Join(roots, " "))
	}
	log := j.job.HostLog
	if log == nil {
		log = io.Discard
	}
	closure, err := j.x.Store.Closure(ctx, roots, log)
	if err != nil {
		return nil, fmt.Errorf("ask Nix for the closure of the staged outputs: %w", err)
	}
	dir := j.x.storeDir()
	in := make(map[string]bool, len(closure))
	for _, p := range closure {
		if filepath.Dir(p) != dir || !storeBaseName.MatchString(filepath.Base(p)) {
			return nil, fmt.Errorf("the closure of the staged outputs holds %q, which is not a store path directly under %s", p, dir)
		}
		in[p] = true
	}
	for _, r := range roots {
		if !in[r] {
			return nil, fmt.Errorf("the closure Nix gave for the staged outputs lacks the output %s itself", r)
		}
	}
	// within reports whether the resolved path p lies in a closure path.
	within := func(p string) bool {
		rel, ok := strings.CutPrefix(p, dir+"/")
		top, _, _ := strings.Cut(rel, "/")
		return ok && in[dir+"/"+top]
	}
	for _, s := range sources {
		resolved, err := filepath.EvalSymlinks(s)
		if err != nil {
			return nil, fmt.Errorf("resolve payload mount %s: %w", s, err)
		}
		if !within(resolved) {
			return nil, fmt.Errorf("payload mount %s resolves to %s, outside the closure of the job's staged outputs", s, resolved)
		}
	}
	disks := make([]Disk, 0, len(closure))
	for _, p := range closure {
		source := p
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("closure of the staged outputs: %w", err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if source, err = filepath.EvalSymlinks(p); err != nil {
				return nil, fmt.Errorf("closure of the staged outputs: resolve %s: %w", p, err)
			}
			if !within(source) {
				return nil, fmt.Errorf("closure of the staged outputs: %s is a symlink to %s, outside the closure", p, source)
			}
		}
		base := filepath.Base(p)
		disks = append(disks, Disk{Name: closureDevicePrefix + base[:32], Source: source,
			Path: NixStoreGuestPath + "/" + base, ReadOnly: true})
	}
	j.hostf("the guest sees the Nix store closure of its staged outputs: %d store paths, each read-only at %s/<name> (devices %s<hash>)",
		len(disks), NixStoreGuestPath, closureDevicePrefix)
	return disks, nil
}
