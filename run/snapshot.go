package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"jerichoci/internal/atomicfile"
	"jerichoci/model"
	"jerichoci/targets"
)

// snapshotSkips are left out of source snapshots at any depth, whatever
// the profile (docs/CONTRACTS.md, "Snapshots").
var snapshotSkips = map[string]bool{".git": true, ".pikaci": true, ".direnv": true, "target": true}

// nestedSkips are left out below the root only: a root build/ is kept.
var nestedSkips = map[string]bool{"node_modules": true, ".gradle": true, "DerivedData": true, "build": true}

// SkipInSnapshot reports whether a file or directory name is left out of
// snapshots at any depth, whatever the profile.
func SkipInSnapshot(name string) bool { return snapshotSkips[name] }

// SnapshotProfile selects the root-level skip rules of a snapshot
// (docs/CONTRACTS.md, "Snapshots").
type SnapshotProfile string

// Snapshot profiles: full keeps everything but the skip names; rust (staged
// Linux Rust) also drops root ios/ and android/; followup drops root ios/.
// The empty profile is full. Rust and followup are the profiles a
// catalog's staged jobs name.
const (
	ProfileFull     SnapshotProfile = "full"
	ProfileRust     SnapshotProfile = targets.SnapshotProfileRust
	ProfileFollowup SnapshotProfile = targets.SnapshotProfileFollowup
)

func (p SnapshotProfile) valid() error {
	switch p {
	case "", ProfileFull, ProfileRust, ProfileFollowup:
		return nil
	}
	return fmt.Errorf("unknown snapshot profile %q", string(p))
}

// skips reports whether an entry named name is left out of a snapshot;
// root says it is directly in the tree's root (the original's
// should_skip).
func (p SnapshotProfile) skips(name string, root bool) bool {
	switch {
	case snapshotSkips[name]:
		return true
	case !root:
		return nestedSkips[name]
	case name == "ios":
		return p == ProfileRust || p == ProfileFollowup
	case name == "android":
		return p == ProfileRust
	}
	return false
}

// SnapshotOptions are one snapshot's rules and metadata.
type SnapshotOptions struct {
	Profile SnapshotProfile
	// Exclude are absolute paths left out (a state root inside the source).
	Exclude   []string
	GitHead   *string
	GitDirty  *bool
	CreatedAt time.Time
	// SourceRoot is the source root the metadata records; "" records the
	// tree copied (a rerun copies an earlier snapshot of another root).
	SourceRoot string
}

// CopySnapshot copies the source tree src into dst (which must not exist),
// leaving out what the profile skips and the paths in opt.Exclude (such as
// a state root inside the source tree), and writes dst/pikaci-snapshot.json
// with the content hash of the copy (see ContentHash), which it returns.
// A root pikaci-snapshot.json of the source is not copied: ours replaces
// it. Symlinks stay links; a socket, device or FIFO is an error. Every
// file and directory, dst included, keeps its own permission bits, never
// more (no setuid, setgid or sticky bit): a directory gets them once its
// contents are in, so a read-only one copies.
func CopySnapshot(ctx context.Context, src, dst string, opt SnapshotOptions) (model.SnapshotMetadata, error) {
	if err := opt.Profile.valid(); err != nil {
		return model.SnapshotMetadata{}, err
	}
	absSrc, err := filepath.Abs(src)
	if err != nil {
		return model.SnapshotMetadata{}, err
	}
	absDst, err := filepath.Abs(dst)
	if err != nil {
		return model.SnapshotMetadata{}, err
	}
	w := &treeWalk{ctx: ctx, profile: opt.Profile, h: sha256.New(), dst: absDst,
		exclude: map[string]bool{absDst: true}}
	for _, e := range opt.Exclude {
		if abs, err := filepath.Abs(e); err == nil {
			w.exclude[abs] = true
		}
	}
	info, err := os.Stat(absSrc)
	if err != nil {
		return model.SnapshotMetadata{}, err
	}
	if !info.IsDir() {
		return model.SnapshotMetadata{}, fmt.Errorf("snapshot source %s is not a directory", src)
	}
	if err := os.MkdirAll(filepath.Dir(absDst), 0o755); err != nil {
		return model.SnapshotMetadata{}, err
	}
	if err := os.Mkdir(absDst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return model.SnapshotMetadata{}, err
	}
	w.dirs = append(w.dirs, dirMode{absDst, info.Mode().Perm()})
	if err := w.walk(absSrc, "", true); err != nil {
		return model.SnapshotMetadata{}, err
	}
	sum := hex.EncodeToString(w.h.Sum(nil))
	recorded := src
	if opt.SourceRoot != "" {
		recorded = opt.SourceRoot
	}
	meta := model.SnapshotMetadata{SourceRoot: recorded, SnapshotDir: dst, GitHead: opt.GitHead, GitDirty: opt.GitDirty,
		CreatedAt: model.At(opt.CreatedAt), ContentHash: &sum}
	b, err := model.EncodeFile(meta)
	if err != nil {
		return model.SnapshotMetadata{}, err
	}
	// Before the modes: dst may become read-only.
	if err := atomicfile.WriteFile(filepath.Join(absDst, model.SnapshotMetadataFile), b, 0o644); err != nil {
		return model.SnapshotMetadata{}, err
	}
	for i := len(w.dirs) - 1; i >= 0; i-- { // children before their parents
		if err := os.Chmod(w.dirs[i].path, w.dirs[i].perm); err != nil {
			return model.SnapshotMetadata{}, err
		}
	}
	return meta, nil
}

// ContentHash is the content hash of the tree dir as a snapshot with this
// profile holds it: a source tree hashes as its snapshot does, and a
// snapshot as its pikaci-snapshot.json says (docs/CONTRACTS.md, "Snapshots").
// sha256 over the kept entries, each directory's sorted by name, a
// directory before its contents, rel the slash-separated path below dir:
//
//	symlink: "symlink\0" rel "\0" target "\0"
//	directory: "dir\0" rel "\0", then its entries
//	file: "file\0" rel "\0" bytes "\0"
//
// The root itself adds nothing; the root pikaci-snapshot.json is left out.
// A socket, device or FIFO is an error.
func ContentHash(dir string, profile SnapshotProfile) (string, error) {
	if err := profile.valid(); err != nil {
		return "", err
	}
	w := &treeWalk{ctx: context.Background(), profile: profile, h: sha256.New()}
	if err := w.walk(dir, "", true); err != nil {
		return "", err
	}
	return hex.EncodeToString(w.h.Sum(nil)), nil
}

type dirMode struct {
	path string
	perm fs.FileMode
}

// treeWalk hashes the entries a snapshot keeps, in the content hash's
// order, and copies them below dst unless it is empty.
type treeWalk struct {
	ctx     context.Context
	profile SnapshotProfile
	exclude map[string]bool // absolute paths left out
	h       hash.Hash
	dst     string
	dirs    []dirMode // parents first
}

// walk visits the entries of dir, whose path below the tree's root is rel
// ("" for the root itself).
func (w *treeWalk) walk(dir, rel string, root bool) error {
	entries, err := os.ReadDir(dir) // sorted by name, byte-wise
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		if w.profile.skips(name, root) || root && name == model.SnapshotMetadataFile {
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

func (w *treeWalk) entry(path, rel string) error {
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
			w.dirs = append(w.dirs, dirMode{target, mode.Perm()})
		}
		return w.walk(path, rel, false)
	case mode.IsRegular():
		io.WriteString(w.h, "file\x00"+rel+"\x00")
		if target != "" {
			err = copyFile(path, target, mode.Perm(), w.h)
		} else {
			err = hashFile(path, w.h)
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

func copyFile(src, dst string, perm fs.FileMode, h io.Writer) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
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
