package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"jerichoci/internal/atomicfile"
	"jerichoci/internal/treecopy"
	"jerichoci/model"
	"jerichoci/targets"
)

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
// should_skip). The snapshot's own pikaci-snapshot.json at the root is
// left out too: a copy writes its own.
func (p SnapshotProfile) skips(name string, root bool) bool {
	switch {
	case model.SnapshotSkips(name, root):
		return true
	case !root:
		return false
	case name == model.SnapshotMetadataFile:
		return true
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

// SnapshotsOutside is the Runner's Snapshot for a state root that may lie
// inside the source tree (`./.pikaci`, the default): CopySnapshot, leaving
// the state root out.
func SnapshotsOutside(stateRoot string) func(ctx context.Context, src, dst string, opt SnapshotOptions) (model.SnapshotMetadata, error) {
	return func(ctx context.Context, src, dst string, opt SnapshotOptions) (model.SnapshotMetadata, error) {
		opt.Exclude = append(opt.Exclude, stateRoot)
		return CopySnapshot(ctx, src, dst, opt)
	}
}

// CopySnapshot copies the source tree src into dst (which must not exist),
// leaving out what the profile skips and the paths in opt.Exclude (such as
// a state root inside the source tree), and writes dst/pikaci-snapshot.json
// with the content hash of the copy (see ContentHash), which it returns.
// A root pikaci-snapshot.json of the source is not copied: ours replaces
// it. The copy is internal/treecopy's: symlinks stay links, a socket,
// device or FIFO is an error, and every file and directory, dst included,
// keeps its own permission bits, never more (no setuid, setgid or sticky
// bit).
func CopySnapshot(ctx context.Context, src, dst string, opt SnapshotOptions) (model.SnapshotMetadata, error) {
	if err := opt.Profile.valid(); err != nil {
		return model.SnapshotMetadata{}, err
	}
	info, err := os.Stat(src)
	if err != nil {
		return model.SnapshotMetadata{}, err
	}
	if !info.IsDir() {
		return model.SnapshotMetadata{}, fmt.Errorf("snapshot source %s is not a directory", src)
	}
	recorded := src
	if opt.SourceRoot != "" {
		recorded = opt.SourceRoot
	}
	h := sha256.New()
	var meta model.SnapshotMetadata
	err = treecopy.Copy(ctx, src, dst, treecopy.Options{Skip: opt.Profile.skips, Exclude: opt.Exclude, Hash: h,
		Finish: func() error { // before the modes: dst may become read-only
			sum := hex.EncodeToString(h.Sum(nil))
			meta = model.SnapshotMetadata{SourceRoot: recorded, SnapshotDir: dst, GitHead: opt.GitHead, GitDirty: opt.GitDirty,
				CreatedAt: model.At(opt.CreatedAt), ContentHash: &sum}
			b, err := model.EncodeFile(meta)
			if err != nil {
				return err
			}
			return atomicfile.WriteFile(filepath.Join(dst, model.SnapshotMetadataFile), b, 0o644)
		}})
	if err != nil {
		return model.SnapshotMetadata{}, err
	}
	return meta, nil
}

// ContentHash is the content hash of the tree dir as a snapshot with this
// profile holds it: a source tree hashes as its snapshot does, and a
// snapshot as its pikaci-snapshot.json says (docs/CONTRACTS.md, "Snapshots"):
// the sha256 of internal/treecopy's description of the kept entries (a
// symlink's target, a directory, a file's bytes, each by its path; see
// treecopy.Options.Hash). The root pikaci-snapshot.json is left out. A
// socket, device or FIFO is an error.
func ContentHash(dir string, profile SnapshotProfile) (string, error) {
	if err := profile.valid(); err != nil {
		return "", err
	}
	h := sha256.New()
	if err := treecopy.Hash(context.Background(), dir, treecopy.Options{Skip: profile.skips, Hash: h}); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
