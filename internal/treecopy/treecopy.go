// Package treecopy copies a directory tree, the one way the project does:
// a run's source snapshot (run.CopySnapshot), a host-local job's workspace
// (executor/hostlocal) and a warm-pool instance's workspace (executor) are
// all made by Copy, and a snapshot's content hash (docs/CONTRACTS.md,
// "Snapshots") is written by the same walk. It is a leaf: the standard
// library only.
//
// What a copy holds:
//
//   - a regular file: its bytes, or with Options.Link a hard link to the
//     source file (a copy where a link is refused: another filesystem,
//     or a file the kernel will not link for us);
//   - a directory: its entries, walked in name order; its mode is set once
//     they are in, so a read-only directory copies (dst itself included);
//   - a symlink: a symlink with the same target, never followed.
//
// A socket, device or FIFO is an error naming it. Options.Skip and
// Options.Exclude leave entries out; dst is never copied into itself.
//
// # Modes: one policy
//
// Every copied file and directory gets its source's permission bits
// exactly (Kept), whatever the umask, never more: a file its owner alone
// could read stays so. The setuid, setgid and sticky bits never survive a
// copy. What is copied comes from a client's source tree, which the daemon
// does not trust (docs/SECURITY.md), and lands where a job runs: a setuid
// program kept in a workspace would be a way up for whoever wrote it. A
// hard link shares its source's mode, so a file whose source carries one of
// those bits is copied, never linked.
package treecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Kept are the mode bits a copy keeps: the permission bits, nothing else.
const Kept = fs.ModePerm

// dropped are the bits a copy never keeps (and a link would).
const dropped = fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// Options are one copy's rules. The zero value copies every entry.
type Options struct {
	// Link hard-links regular files instead of copying their bytes; a file
	// that cannot be linked (another filesystem, a link refused, a setuid,
	// setgid or sticky bit) is copied.
	Link bool
	// Skip, if set, reports whether the entry called name is left out
	// (a directory with everything below it); root says the entry is
	// directly in the tree's root, so a rule can keep a root build/ and
	// drop a nested one.
	Skip func(name string, root bool) bool
	// Exclude are absolute paths left out (a state root inside the source
	// tree).
	Exclude []string
	// Hash, if set, is written a description of the copied tree, entry by
	// entry in the walk's order (a directory before its contents, each
	// directory's entries by name), with rel the slash-separated path below
	// the root (which adds nothing itself):
	//
	//	symlink: "symlink\0" rel "\0" target "\0"
	//	directory: "dir\0" rel "\0", then its entries
	//	file: "file\0" rel "\0" bytes "\0"
	//
	// Modes are not part of it. A sha256 over it is a snapshot's content
	// hash (docs/CONTRACTS.md, "Snapshots").
	Hash io.Writer
	// Finish, if set, runs once every entry is in and before the
	// directories get their modes (a read-only one takes no new entry
	// after that): the place to write the file that says a copy is
	// complete.
	Finish func() error
}

// Copy copies the directory src into dst, creating dst and its parents if
// missing; an existing dst must not hold the names it copies.
func Copy(ctx context.Context, src, dst string, opt Options) error {
	absDst, err := filepath.Abs(dst)
	if err != nil {
		return err
	}
	w, info, err := newWalk(ctx, src, opt)
	if err != nil {
		return err
	}
	w.dst = absDst
	w.exclude[absDst] = true
	if err := os.MkdirAll(filepath.Dir(absDst), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(absDst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	w.dirs = append(w.dirs, dirMode{absDst, info.Mode() & Kept})
	if err := w.walk(w.src, "", true); err != nil {
		return err
	}
	if opt.Finish != nil {
		if err := opt.Finish(); err != nil {
			return err
		}
	}
	for i := len(w.dirs) - 1; i >= 0; i-- { // children before their parents
		if err := os.Chmod(w.dirs[i].path, w.dirs[i].perm); err != nil {
			return err
		}
	}
	return nil
}

// Hash writes to opt.Hash the description of dir that Copy would write,
// copying nothing (opt.Link and opt.Finish play no part).
func Hash(ctx context.Context, dir string, opt Options) error {
	if opt.Hash == nil {
		return errors.New("treecopy: Hash without Options.Hash")
	}
	w, _, err := newWalk(ctx, dir, opt)
	if err != nil {
		return err
	}
	return w.walk(w.src, "", true)
}

type dirMode struct {
	path string
	perm fs.FileMode
}

// walk is one tree walk: it describes the kept entries to h and copies
// them below dst unless dst is empty.
type walk struct {
	ctx     context.Context
	opt     Options
	src     string
	exclude map[string]bool // absolute paths left out
	h       io.Writer
	dst     string
	dirs    []dirMode // parents first
}

func newWalk(ctx context.Context, src string, opt Options) (*walk, fs.FileInfo, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, nil, err
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, nil, err
	}
	if !info.IsDir() {
		return nil, nil, fmt.Errorf("copy tree %s: not a directory", src)
	}
	w := &walk{ctx: ctx, opt: opt, src: abs, exclude: map[string]bool{}, h: opt.Hash}
	if w.h == nil {
		w.h = io.Discard
	}
	for _, e := range opt.Exclude {
		if a, err := filepath.Abs(e); err == nil {
			w.exclude[a] = true
		}
	}
	return w, info, nil
}

// walk visits the entries of dir, whose path below the tree's root is rel
// ("" for the root itself).
func (w *walk) walk(dir, rel string, root bool) error {
	entries, err := os.ReadDir(dir) // sorted by name, byte-wise
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		if w.opt.Skip != nil && w.opt.Skip(name, root) {
			continue
		}
		path := filepath.Join(dir, name)
		if w.exclude[path] {
			continue
		}
		r := name
		if rel != "" {
			r = rel + "/" + name
		}
		if err := w.entry(path, r); err != nil {
			return err
		}
	}
	return nil
}

func (w *walk) entry(path, rel string) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	target := ""
	if w.dst != "" {
		target = filepath.Join(w.dst, filepath.FromSlash(rel))
	}
	mode := info.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		link, err := os.Readlink(path)
		if err != nil {
			return err
		}
		io.WriteString(w.h, "symlink\x00"+rel+"\x00"+link+"\x00")
		if target != "" {
			return os.Symlink(link, target)
		}
		return nil
	case mode.IsDir():
		io.WriteString(w.h, "dir\x00"+rel+"\x00")
		if target != "" {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			w.dirs = append(w.dirs, dirMode{target, mode & Kept})
		}
		return w.walk(path, rel, false)
	case mode.IsRegular():
		io.WriteString(w.h, "file\x00"+rel+"\x00")
		switch {
		case target == "":
			err = hashFile(path, w.h)
		case w.opt.Link && mode&dropped == 0:
			err = linkFile(path, target, mode&Kept, w.h)
		default:
			err = copyFile(path, target, mode&Kept, w.h)
		}
		io.WriteString(w.h, "\x00")
		return err
	}
	return fmt.Errorf("unsupported filesystem entry: %s is a %s", path, fileKind(mode))
}

// fileKind names the type of a special file.
func fileKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeNamedPipe != 0:
		return "FIFO"
	case mode&fs.ModeCharDevice != 0:
		return "character device"
	case mode&fs.ModeDevice != 0:
		return "block device"
	}
	return fmt.Sprintf("special file (%v)", mode.Type())
}

// link is os.Link; tests refuse links through it.
var link = os.Link

// linkFile hard-links dst to src, or copies src where the link is refused:
// across filesystems (EXDEV), or a file the kernel's protected_hardlinks
// keeps us from linking (EPERM).
func linkFile(src, dst string, perm fs.FileMode, h io.Writer) error {
	err := link(src, dst)
	if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) {
		return copyFile(src, dst, perm, h)
	}
	if err != nil {
		return err
	}
	if h != io.Discard {
		return hashFile(src, h)
	}
	return nil
}

func hashFile(path string, h io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// copyFile copies the regular file src to the new file dst, mode perm
// exactly, writing its bytes to h as well.
func copyFile(src, dst string, perm fs.FileMode, h io.Writer) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = out.Chmod(perm) // exactly perm, whatever the umask
	if err == nil {
		_, err = io.Copy(io.MultiWriter(out, h), in)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
