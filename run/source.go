package run

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"jerichoci/model"
)

// PackSource writes dir as a gzipped tarball to w, the format of the
// sources object store: regular files, directories and symlinks, in
// lexical order, with fixed times and owners, so equal trees give equal
// bytes. The snapshot skip names (.git, target, …) are left out, as in a
// snapshot. only, when not nil, selects the files to pack by their
// slash-separated path relative to dir (say, the files git knows);
// directories then only come as the parents of those files.
func PackSource(ctx context.Context, dir string, w io.Writer, only map[string]bool) error {
	parents := map[string]bool{}
	for f := range only {
		for p := path.Dir(f); p != "." && p != "/" && !parents[p]; p = path.Dir(p) {
			parents[p] = true
		}
	}
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	epoch := time.Unix(0, 0).UTC()
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		slash := filepath.ToSlash(rel)
		if model.SnapshotSkipsAnywhere(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if only != nil {
			switch {
			case d.IsDir() && !parents[slash]:
				return filepath.SkipDir
			case d.IsDir():
				return nil // implied by its files
			case !only[slash]:
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: slash, Mode: int64(info.Mode().Perm()), ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, link
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		default:
			return nil // sockets, devices, pipes are left out
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("pack %s: %w", rel, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("pack %s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack source %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack source %s: %w", dir, err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("pack source %s: %w", dir, err)
	}
	return nil
}

// ErrSourceRefused is wrapped when a source breaks a rule of what a source
// may hold (an entry or a link outside the tree, a device, a hard link, a
// bound of SourceLimits): retrying cannot help. The text of such an error
// starts with "source refused: ".
var ErrSourceRefused = errors.New("source refused")

// ErrSourceUnusable is wrapped when a source matches its digest but is not
// a source tarball: retrying cannot help.
var ErrSourceUnusable = errors.New("source is not a usable tarball")

// refusedEntry is the refusal of one tarball entry.
func refusedEntry(name, format string, args ...any) error {
	return fmt.Errorf("%w: entry %q: %s", ErrSourceRefused, name, fmt.Sprintf(format, args...))
}

const (
	maxLinkHops  = 40   // symlinks followed to resolve one link, as Linux's MAXSYMLINKS
	maxNameBytes = 255  // one path component
	maxPathBytes = 4095 // a whole path or link target
)

// UnpackSource extracts a source tarball (gzipped tar, as PackSource
// writes it) from r, an untrusted upload, into dst (created if missing).
// Every write goes through an os.Root on dst and never through a symlink:
//
//   - a regular file keeps its permission bits, never setuid, setgid or
//     sticky;
//   - a directory keeps its permission bits without group and world write
//     and with the owner's rwx, applied once its contents are in;
//   - a symlink is kept when its target is relative and stays in the tree,
//     also once resolved physically through the other links of the tree
//     (checked after extraction; a dangling link is fine);
//   - hard links, devices, FIFOs and any other type are refused; PAX global
//     headers are skipped;
//   - an entry outside the tree, under a symlink or a file, or twice in the
//     tarball is refused;
//   - lim bounds the bytes of the regular files, as read whatever the
//     headers say, and the number of entries; reading stops at the bound
//     (a zero field takes its default).
//
// Refusals wrap ErrSourceRefused and a corrupt stream ErrSourceUnusable;
// a failure of the disk (ENOSPC, EDQUOT, …) or of r wraps neither.
func UnpackSource(ctx context.Context, r io.Reader, dst string, lim SourceLimits) error {
	return unpackSource(ctx, r, dst, lim, createInRoot)
}

// createFunc creates a regular file of the tree for writing (a test seam).
type createFunc func(root *os.Root, name string, perm fs.FileMode) (io.WriteCloser, error)

func createInRoot(root *os.Root, name string, perm fs.FileMode) (io.WriteCloser, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil { // exactly perm, whatever the umask
		f.Close()
		return nil, err
	}
	return f, nil
}

func unpackSource(ctx context.Context, r io.Reader, dst string, lim SourceLimits, create createFunc) error {
	_, err := os.Lstat(dst)
	created := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("unpack source: %w", err)
	}
	if created { // 0755 whatever the umask: the tree's root has no entry
		if err := os.Chmod(dst, 0o755); err != nil {
			return fmt.Errorf("unpack source: %w", err)
		}
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("unpack source: %w", err)
	}
	defer root.Close()
	u := &unpacker{ctx: ctx, root: root, lim: lim.WithDefaults(), create: create,
		kinds: map[string]entryKind{}, dirModes: map[string]fs.FileMode{}}
	return u.unpack(&sourceReader{ctx: ctx, r: r})
}

// entryKind is what a path of the tree is, as this tarball made it.
type entryKind int

const (
	kindImplicitDir entryKind = iota + 1 // a parent with no entry (yet)
	kindDir
	kindFile
	kindLink
)

// unpacker is one run of UnpackSource.
type unpacker struct {
	ctx      context.Context
	root     *os.Root
	lim      SourceLimits
	create   createFunc
	kinds    map[string]entryKind   // by cleaned slash path
	dirs     []string               // directories to chmod, parents first
	dirModes map[string]fs.FileMode // their final modes
	links    []string               // symlinks to resolve at the end
	entries  int
	bytes    int64 // regular file bytes written
}

func (u *unpacker) unpack(r io.Reader) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return u.streamErr(err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		if err := u.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return u.streamErr(err)
		}
		if u.entries++; u.entries > u.lim.MaxEntries {
			return fmt.Errorf("%w: the tarball has more than %d entries (--max-source-entries)", ErrSourceRefused, u.lim.MaxEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
	for _, name := range u.links {
		if err := u.checkLink(name); err != nil {
			return err
		}
	}
	for i := len(u.dirs) - 1; i >= 0; i-- { // children before their parents
		if err := u.root.Chmod(u.dirs[i], u.dirModes[u.dirs[i]]); err != nil {
			return u.fsErr(u.dirs[i], err)
		}
	}
	return nil
}

// entry checks and creates one tar entry.
func (u *unpacker) entry(hdr *tar.Header, data io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink, 'V':
		return nil // metadata (a GNU volume label is 'V'), not a file
	}
	raw := hdr.Name
	if strings.ContainsRune(raw, 0) {
		return refusedEntry(raw, "the name holds a NUL byte")
	}
	name := path.Clean(raw)
	switch {
	case name == "." && hdr.Typeflag == tar.TypeDir:
		return nil // "./" of `tar -C dir -czf x .`
	case name == ".":
		return refusedEntry(raw, "only a directory may name the tree itself")
	case path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../"):
		return refusedEntry(raw, "the path is outside the tree")
	case len(name) > maxPathBytes:
		return refusedEntry(name, "the path is longer than %d bytes", maxPathBytes)
	}
	for _, c := range strings.Split(name, "/") {
		if len(c) > maxNameBytes {
			return refusedEntry(name, "a path component is longer than %d bytes", maxNameBytes)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		return refusedEntry(name, "hard links are not accepted")
	case tar.TypeChar:
		return refusedEntry(name, "character devices are not accepted")
	case tar.TypeBlock:
		return refusedEntry(name, "block devices are not accepted")
	case tar.TypeFifo:
		return refusedEntry(name, "FIFOs are not accepted")
	default:
		return refusedEntry(name, "entries of type %q are not accepted", hdr.Typeflag)
	}
	switch k, seen := u.kinds[name]; {
	case seen && k == kindImplicitDir && hdr.Typeflag != tar.TypeDir:
		return refusedEntry(name, "earlier entries made it a directory")
	case seen && k != kindImplicitDir:
		return refusedEntry(name, "the tarball holds it more than once")
	}
	if err := u.parents(name); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dir(name, (fs.FileMode(hdr.Mode&0o777)|0o700)&^0o022)
	case tar.TypeSymlink:
		return u.symlink(name, hdr.Linkname)
	}
	return u.file(name, fs.FileMode(hdr.Mode&0o777), data)
}

// parents makes sure every parent of name is a real directory, creating
// the missing ones: an entry under a symlink or a file is refused, so that
// nothing is ever written through a link, even one inside the tree.
func (u *unpacker) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		switch u.kinds[p] {
		case kindDir, kindImplicitDir:
			continue
		case kindLink:
			return refusedEntry(name, "its parent %q is a symlink", p)
		case kindFile:
			return refusedEntry(name, "its parent %q is a file", p)
		}
		// Not made by this tarball: dst may hold it already.
		fi, err := u.root.Lstat(p)
		switch {
		case err == nil && fi.IsDir():
			u.kinds[p] = kindImplicitDir
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			return refusedEntry(name, "its parent %q is a symlink", p)
		case err == nil:
			return refusedEntry(name, "its parent %q is not a directory", p)
		case errors.Is(err, fs.ErrNotExist):
			if err := u.dir(p, 0o755); err != nil {
				return err
			}
			u.kinds[p] = kindImplicitDir
		default:
			return u.fsErr(p, err)
		}
	}
	return nil
}

// dir creates the directory name (or takes the one made as a parent) and
// notes its final mode.
func (u *unpacker) dir(name string, mode fs.FileMode) error {
	if _, seen := u.kinds[name]; !seen {
		if err := u.root.Mkdir(name, 0o700); err != nil {
			return u.fsErr(name, err)
		}
	}
	u.kinds[name] = kindDir
	if _, noted := u.dirModes[name]; !noted {
		u.dirs = append(u.dirs, name)
	}
	u.dirModes[name] = mode
	return nil
}

// symlink creates a link whose target stays in the tree lexically; the
// physical check comes once the whole tree is there.
func (u *unpacker) symlink(name, target string) error {
	switch {
	case target == "":
		return refusedEntry(name, "the symlink has an empty target")
	case strings.ContainsRune(target, 0):
		return refusedEntry(name, "the symlink's target holds a NUL byte")
	case len(target) > maxPathBytes:
		return refusedEntry(name, "the symlink's target is longer than %d bytes", maxPathBytes)
	case path.IsAbs(target):
		return refusedEntry(name, "symlink to %q points outside the tree", target)
	}
	if j := path.Join(path.Dir(name), target); j == ".." || strings.HasPrefix(j, "../") {
		return refusedEntry(name, "symlink to %q points outside the tree", target)
	}
	if err := u.root.Symlink(target, name); err != nil {
		return u.fsErr(name, err)
	}
	u.kinds[name] = kindLink
	u.links = append(u.links, name)
	return nil
}

// file writes a regular file, counting its bytes against lim.MaxBytes as
// they are read: at most one byte past the bound reaches the disk.
func (u *unpacker) file(name string, perm fs.FileMode, data io.Reader) error {
	w, err := u.create(u.root, name, perm)
	if err != nil {
		return u.fsErr(name, err)
	}
	u.kinds[name] = kindFile
	remaining := u.lim.MaxBytes - u.bytes
	src := &errTracker{r: io.LimitReader(data, remaining+1)}
	n, err := io.Copy(w, src)
	cerr := w.Close()
	u.bytes += n
	switch {
	case src.err != nil:
		return u.streamErr(src.err)
	case err != nil:
		return u.fsErr(name, err)
	case cerr != nil:
		return u.fsErr(name, cerr)
	case n > remaining:
		return fmt.Errorf("%w: the tarball unpacks to more than %d bytes (--max-source-bytes)", ErrSourceRefused, u.lim.MaxBytes)
	}
	return nil
}

// checkLink resolves the symlink name physically, component by component
// with Lstat and Readlink relative to the root, as the kernel would: a
// ".." above the root, an absolute target or more than maxLinkHops links
// refuse it. A path that stops existing (or meets a file) resolves to
// nothing: a dangling link is fine.
func (u *unpacker) checkLink(name string) error {
	target, err := u.root.Readlink(name)
	if err != nil {
		return u.fsErr(name, err)
	}
	outside := refusedEntry(name, "symlink to %q points outside the tree", target)
	var cur []string // real directories from the root
	if d := path.Dir(name); d != "." {
		cur = strings.Split(d, "/")
	}
	pending := strings.Split(target, "/")
	for hops := 1; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return outside
			}
			cur = cur[:len(cur)-1]
			continue
		}
		p := path.Join(append(cur[:len(cur):len(cur)], c)...)
		fi, err := u.root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			return nil
		case err != nil:
			return u.fsErr(p, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > maxLinkHops {
				return refusedEntry(name, "symlink to %q does not resolve within %d links", target, maxLinkHops)
			}
			next, err := u.root.Readlink(p)
			if err != nil {
				return u.fsErr(p, err)
			}
			if path.IsAbs(next) {
				return outside
			}
			pending = append(strings.Split(next, "/"), pending...)
		case fi.IsDir():
			cur = append(cur, c)
		default:
			return nil // a file: nothing resolves below it
		}
	}
	return nil
}

// streamErr classifies an error of reading the tarball: a failure of the
// reader under it or of the disk is the infrastructure's, anything else
// means the bytes are not a tarball.
func (u *unpacker) streamErr(err error) error {
	if cerr := u.ctx.Err(); cerr != nil {
		return cerr
	}
	var rerr *sourceReadError
	if errors.As(err, &rerr) || isOutOfSpace(err) {
		return fmt.Errorf("unpack source: read the tarball: %w", err)
	}
	return fmt.Errorf("%w: %w", ErrSourceUnusable, err)
}

// fsErr is a failure of the disk: the infrastructure's, never a refusal.
func (u *unpacker) fsErr(name string, err error) error {
	if isOutOfSpace(err) {
		return fmt.Errorf("unpack source: entry %q: out of disk space: %w", name, err)
	}
	return fmt.Errorf("unpack source: entry %q: %w", name, err)
}

// isOutOfSpace reports a full disk or an exhausted quota.
func isOutOfSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// sourceReader reads the upload, stopping when ctx is done, and marks its
// own errors so they are not taken for a corrupt stream.
type sourceReader struct {
	ctx context.Context
	r   io.Reader
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceReadError{err: err}
	}
	return n, err
}

type sourceReadError struct{ err error }

func (e *sourceReadError) Error() string { return e.err.Error() }
func (e *sourceReadError) Unwrap() error { return e.err }

// errTracker remembers the error of its reader, to tell it from the
// writer's in io.Copy.
type errTracker struct {
	r   io.Reader
	err error
}

func (t *errTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// SourceLimits bound an uploaded source tree; a zero field takes its
// default.
type SourceLimits struct {
	// MaxBytes bounds the bytes of the downloaded object and, separately,
	// the bytes of the regular files it unpacks to.
	MaxBytes int64
	// MaxEntries bounds the number of tar entries.
	MaxEntries int
}

// DefaultSourceLimits: 4 GiB and a million entries.
func DefaultSourceLimits() SourceLimits {
	return SourceLimits{MaxBytes: 4 << 30, MaxEntries: 1_000_000}
}

// WithDefaults fills the zero fields of l from DefaultSourceLimits.
func (l SourceLimits) WithDefaults() SourceLimits {
	d := DefaultSourceLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
}
