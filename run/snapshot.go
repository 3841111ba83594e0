package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"jerichoci/model"
)

// snapshotSkips are left out of source snapshots at any depth
// (CONTRACTS.md §3.4).
var snapshotSkips = map[string]bool{".git": true, ".pikaci": true, ".direnv": true, "target": true}

// SkipInSnapshot reports whether a file or directory name is left out of
// snapshots.
func SkipInSnapshot(name string) bool { return snapshotSkips[name] }

// SnapshotMarker is pikaci-snapshot.json beside the snapshot.
type SnapshotMarker struct {
	ContentHash string `json:"content_hash"`
}

// SnapshotProfile selects the root-level skip rules of a snapshot
// (STAGED-AND-HOST.md §3.8).
type SnapshotProfile string

// Snapshot profiles: full keeps everything but the skip names; rust (staged
// Linux Rust) also drops root ios/ and android/; followup drops root ios/.
const (
	ProfileFull     SnapshotProfile = "full"
	ProfileRust     SnapshotProfile = "rust"
	ProfileFollowup SnapshotProfile = "followup"
)

// SnapshotOptions are one snapshot's rules and metadata.
type SnapshotOptions struct {
	Profile SnapshotProfile
	// Exclude are absolute paths left out (a state root inside the source).
	Exclude   []string
	GitHead   *string
	GitDirty  *bool
	CreatedAt time.Time
}

// CopySnapshot copies the source tree src into dst (which must not exist),
// skipping the snapshot skip names, and writes dst/../pikaci-snapshot.json
// with the content hash. Paths in exclude (such as a state root inside the
// source tree) are left out too. Symlinks stay links; sockets, devices and
// FIFOs are left out. Every file and directory, dst included, keeps its own
// permission bits, never more (no setuid, setgid or sticky bit): a
// directory gets them once its contents are in, so a read-only one copies.
func CopySnapshot(ctx context.Context, src, dst string, opt SnapshotOptions) (model.SnapshotMetadata, error) {
	err := copySnapshot(ctx, src, dst, opt.Exclude...)
	return model.SnapshotMetadata{SourceRoot: src, SnapshotDir: dst, GitHead: opt.GitHead, GitDirty: opt.GitDirty,
		CreatedAt: model.At(opt.CreatedAt)}, err
}

func copySnapshot(ctx context.Context, src, dst string, exclude ...string) error {
	skipPath := map[string]bool{filepath.Clean(dst): true}
	for _, e := range exclude {
		if abs, err := filepath.Abs(e); err == nil {
			skipPath[abs] = true
		}
	}
	h := sha256.New()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	type dirMode struct {
		path string
		perm fs.FileMode
	}
	var dirs []dirMode // parents first
	if info, err := os.Stat(src); err == nil {
		dirs = append(dirs, dirMode{dst, info.Mode().Perm()})
	}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if SkipInSnapshot(d.Name()) || skipPath[filepath.Clean(path)] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", filepath.ToSlash(rel), info.Mode())
		switch {
		case d.IsDir():
			dirs = append(dirs, dirMode{target, info.Mode().Perm()})
			return os.Mkdir(target, 0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			io.WriteString(h, link)
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm(), h)
		}
		return nil // sockets, devices, pipes are left out
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- { // children before their parents
		if err := os.Chmod(dirs[i].path, dirs[i].perm); err != nil {
			return err
		}
	}
	marker, err := model.EncodeFile(SnapshotMarker{ContentHash: hex.EncodeToString(h.Sum(nil))})
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(filepath.Dir(dst), "pikaci-snapshot.json"), marker, 0o644)
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
	var n int64
	if err == nil {
		n, err = io.Copy(io.MultiWriter(out, h), in)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	io.WriteString(h, "\x00"+strconv.FormatInt(n, 10))
	return nil
}
