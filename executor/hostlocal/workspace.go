package hostlocal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"jerichoci/model"
)

// Workspace refresh outcomes, as the original words them in host.log.
const (
	workspaceReused         = "reused unchanged snapshot"
	workspaceRematerialized = "rematerialized from cached snapshot"
)

// refreshWorkspace keeps workspace when its pikaci-snapshot.json has the
// snapshot's content hash (a snapshot without one never matches), else
// removes it and copies the snapshot there again.
func refreshWorkspace(snapshot string, hash *string, workspace string) (string, error) {
	if hash != nil && workspaceHash(workspace) == *hash {
		return workspaceReused, nil
	}
	if err := removeAll(workspace); err != nil {
		return "", err
	}
	if err := materialize(snapshot, workspace); err != nil {
		return "", fmt.Errorf("materialize host-local workspace %s from %s: %w", workspace, snapshot, err)
	}
	return workspaceRematerialized, nil
}

// removeAll removes path; when that fails it makes the directories below
// writable (a copied read-only directory keeps its entries) and tries again.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, werr error) error {
		if werr == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}

// workspaceHash is the content hash recorded in the workspace, "" if none.
func workspaceHash(workspace string) string {
	m, err := readSnapshotMetadata(workspace)
	if err != nil || m.ContentHash == nil {
		return ""
	}
	return *m.ContentHash
}

// materialize copies the snapshot to dst (the original's Full profile:
// it skips what a snapshot never holds anyway). The snapshot's metadata is
// copied last, so a copy cut short never looks complete.
func materialize(src, dst string) error {
	if err := copyTree(src, dst, true); err != nil {
		return err
	}
	meta := filepath.Join(src, model.SnapshotMetadataFile)
	fi, err := os.Lstat(meta)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return copyEntry(meta, filepath.Join(dst, model.SnapshotMetadataFile), fi)
}

// skip is the original's Full-profile filter.
func skip(name string, root bool) bool {
	switch name {
	case ".git", ".pikaci", ".direnv", "target":
		return true
	case "node_modules", ".gradle", "DerivedData", "build":
		return !root
	}
	return false
}

// copyTree copies the directory src into dst, which it creates: files with
// their mode, symlinks as links, directories recursively with their mode
// set once their contents are in.
func copyTree(src, dst string, root bool) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if skip(name, root) || (root && name == model.SnapshotMetadataFile) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := copyEntry(filepath.Join(src, name), filepath.Join(dst, name), fi); err != nil {
			return err
		}
	}
	return nil
}

func copyEntry(src, dst string, fi fs.FileInfo) error {
	mode := fi.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case mode.IsDir():
		if err := copyTree(src, dst, false); err != nil {
			return err
		}
		return os.Chmod(dst, keptMode(mode))
	case mode.IsRegular():
		return copyFile(src, dst, mode)
	}
	return fmt.Errorf("unsupported file type %v at %s", mode.Type(), src)
}

func keptMode(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

func copyFile(src, dst string, mode fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// Chmod, not the open mode: the umask must not change it.
	return out.Chmod(keptMode(mode))
}
