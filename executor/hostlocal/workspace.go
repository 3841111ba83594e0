package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"jerichoci/internal/atomicfile"
	"jerichoci/internal/treecopy"
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
func refreshWorkspace(ctx context.Context, snapshot string, hash *string, workspace string) (string, error) {
	if hash != nil && workspaceHash(workspace) == *hash {
		return workspaceReused, nil
	}
	if err := removeAll(workspace); err != nil {
		return "", err
	}
	if err := materialize(ctx, snapshot, workspace); err != nil {
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

// materialize copies the snapshot to dst, leaving out what every snapshot
// leaves out (a snapshot holds none of it anyway), the way internal/treecopy
// copies: no setuid, setgid or sticky bit survives. The snapshot's
// metadata is copied last, so a copy cut short never looks complete.
func materialize(ctx context.Context, src, dst string) error {
	skip := func(name string, root bool) bool {
		return model.SnapshotSkips(name, root) || root && name == model.SnapshotMetadataFile
	}
	return treecopy.Copy(ctx, src, dst, treecopy.Options{Skip: skip, Finish: func() error {
		meta := filepath.Join(src, model.SnapshotMetadataFile)
		fi, err := os.Stat(meta)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		b, err := os.ReadFile(meta)
		if err != nil {
			return err
		}
		return atomicfile.WriteFile(filepath.Join(dst, model.SnapshotMetadataFile), b, fi.Mode()&treecopy.Kept)
	}})
}
