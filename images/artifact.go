package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Artifact is an image on disk: either one unified tarball, or a split
// image (metadata tarball plus a rootfs tarball, squashfs or VM disk).
type Artifact struct {
	Unified string // path of the unified tarball
	Meta    string // path of the metadata tarball of a split image
	Rootfs  string // path of its rootfs (tarball, squashfs, or disk image)
	VM      bool   // Rootfs is a VM disk image (qcow2 or raw)
}

// FindArtifact finds the image in path: path itself when it is a file (a
// unified tarball), else the files of the directory. A directory holds
// either metadata.tar.* (or meta.tar.*) with disk.qcow2 / rootfs.img (a VM
// image, the original's layout) or rootfs.tar.* / rootfs.squashfs, or else
// exactly one unified tarball (*.tar, *.tar.gz, *.tar.xz, …). Other files,
// such as README.txt, are ignored.
func FindArtifact(path string) (Artifact, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Artifact{}, fmt.Errorf("image artifact: %w", err)
	}
	if !fi.IsDir() {
		return Artifact{Unified: path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return Artifact{}, fmt.Errorf("image artifact: %w", err)
	}
	var metas, vmDisks, rootfs, tarballs []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || e.IsDir() {
			continue
		}
		full := filepath.Join(path, n)
		switch {
		case strings.HasPrefix(n, "metadata.tar") || strings.HasPrefix(n, "meta.tar"):
			metas = append(metas, full)
		case strings.HasSuffix(n, ".qcow2") || n == "rootfs.img" || n == "disk.img":
			vmDisks = append(vmDisks, full)
		case strings.HasPrefix(n, "rootfs.tar") || n == "rootfs.squashfs":
			rootfs = append(rootfs, full)
		case isTarball(n):
			tarballs = append(tarballs, full)
		}
	}
	switch {
	case len(metas) > 1:
		return Artifact{}, fmt.Errorf("image artifact %s: several metadata tarballs: %s", path, strings.Join(metas, ", "))
	case len(metas) == 1:
		if len(vmDisks)+len(rootfs) != 1 {
			return Artifact{}, fmt.Errorf("image artifact %s: want one rootfs (disk.qcow2, rootfs.img, rootfs.tar.*, rootfs.squashfs) beside %s, found %d",
				path, filepath.Base(metas[0]), len(vmDisks)+len(rootfs))
		}
		if len(vmDisks) == 1 {
			return Artifact{Meta: metas[0], Rootfs: vmDisks[0], VM: true}, nil
		}
		return Artifact{Meta: metas[0], Rootfs: rootfs[0]}, nil
	case len(tarballs) == 1:
		return Artifact{Unified: tarballs[0]}, nil
	case len(tarballs) > 1:
		return Artifact{}, fmt.Errorf("image artifact %s: several tarballs: %s", path, strings.Join(tarballs, ", "))
	}
	return Artifact{}, fmt.Errorf("image artifact %s: %w (want a unified tarball, or metadata.tar.* with disk.qcow2 or rootfs.tar.*)", path, errNoImage)
}

func isTarball(n string) bool {
	for _, s := range []string{".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar.bz2", ".tar.lzma"} {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

// Files lists the artifact's files in upload order.
func (a Artifact) Files() []string {
	if a.Unified != "" {
		return []string{a.Unified}
	}
	return []string{a.Meta, a.Rootfs}
}

// Fingerprint computes the fingerprint Incus gives the artifact: sha256 of
// the unified tarball, or of the metadata bytes followed by the rootfs
// bytes.
func (a Artifact) Fingerprint() (string, error) {
	h := sha256.New()
	for _, p := range a.Files() {
		f, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("image fingerprint: %w", err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("image fingerprint: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Store is the part of an Incus server that Import needs, in one project.
// cmd/jerichoci implements it with executor/incus.
type Store interface {
	// AliasTarget returns the fingerprint the alias points at, "" when
	// there is no such alias.
	AliasTarget(ctx context.Context, alias string) (string, error)
	HasImage(ctx context.Context, fingerprint string) (bool, error)
	// Upload uploads the artifact and returns the server's fingerprint.
	Upload(ctx context.Context, a Artifact) (string, error)
	CreateAlias(ctx context.Context, alias, fingerprint, description string) error
	// MoveAlias points an existing alias at another image.
	MoveAlias(ctx context.Context, alias, fingerprint, description string) error
	// PruneImage deletes the image if no alias points at it any more.
	PruneImage(ctx context.Context, fingerprint string) (deleted bool, err error)
}

// What Import did.
const (
	Unchanged = "unchanged" // the alias already pointed at this image
	Aliased   = "aliased"   // the image was there; the alias now points at it
	Uploaded  = "uploaded"  // the image was uploaded and the alias points at it
)

// ImportResult says what Import did.
type ImportResult struct {
	Action      string
	Fingerprint string
	Previous    string // the alias's former target, "" if none or unchanged
	Pruned      bool   // the former target had no alias left and was deleted
}

// Import makes alias point at the artifact's image, uploading it only when
// the server does not have it. Re-importing the same bytes changes
// nothing. The image an alias used to point at is deleted when no other
// alias points at it, as the original's import replaced it.
func Import(ctx context.Context, s Store, a Artifact, alias, description string) (ImportResult, error) {
	fp, err := a.Fingerprint()
	if err != nil {
		return ImportResult{}, err
	}
	fail := func(err error) (ImportResult, error) {
		return ImportResult{}, fmt.Errorf("import image %s as %q: %w", short(fp), alias, err)
	}
	target, err := s.AliasTarget(ctx, alias)
	if err != nil {
		return fail(err)
	}
	if target == fp {
		return ImportResult{Action: Unchanged, Fingerprint: fp}, nil
	}
	res := ImportResult{Action: Aliased, Fingerprint: fp, Previous: target}
	has, err := s.HasImage(ctx, fp)
	if err != nil {
		return fail(err)
	}
	if !has {
		got, err := s.Upload(ctx, a)
		if err != nil {
			return fail(err)
		}
		if got != fp {
			return fail(fmt.Errorf("server computed fingerprint %s, want %s", got, fp))
		}
		res.Action = Uploaded
	}
	if target == "" {
		err = s.CreateAlias(ctx, alias, fp, description)
	} else {
		err = s.MoveAlias(ctx, alias, fp, description)
	}
	if err != nil {
		return fail(err)
	}
	if target != "" {
		if res.Pruned, err = s.PruneImage(ctx, target); err != nil {
			return fail(fmt.Errorf("alias moved, but removing the old image %s failed: %w", short(target), err))
		}
	}
	return res, nil
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}
