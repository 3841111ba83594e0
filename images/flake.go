package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"jerichoci/model"
)

// FlakeBuilder is the host's Nix as BuildFlake needs it; cmd/jerichoci
// adapts nixbuild.Builder (through the nix-daemon, a flake's nixConfig
// ignored, evaluated unprivileged when run as root).
type FlakeBuilder interface {
	// PackageNames lists the attribute names of flake#packages.<system>.
	PackageNames(ctx context.Context, flake, system string, log io.Writer) ([]string, error)
	// Build realizes installable and returns its output's store path.
	Build(ctx context.Context, installable string, log io.Writer) (string, error)
}

// Image properties set on an image built from a flake, besides
// RoleProperty (docs/INCUS.md, "Role images from a flake").
const (
	FlakeAttrProperty   = "jerichoci.flake.attr"        // the package attribute built
	FlakeOutputProperty = "jerichoci.flake.output"      // its store path
	FlakeHashProperty   = "jerichoci.flake.output_hash" // the store path's hash part
)

// FlakeImage is a role image built from a flake.
type FlakeImage struct {
	Role        model.IncusGuestRole
	Attr        string // the package attribute built
	Installable string // what was built, e.g. path:/src#packages.x86_64-linux.<Attr>
	Output      string // the output's store path
	Artifact    Artifact
}

// FlakeAttrs are the package attributes that build role's image, in the
// order they are tried: the role's own, then its legacy name.
func FlakeAttrs(role model.IncusGuestRole) []string {
	return []string{role.ImagePackageAttr(), role.LegacyImagePackageAttr()}
}

// NixSystem is the host's Nix system, e.g. x86_64-linux.
func NixSystem() (string, error) {
	arch, err := incusArch()
	if err != nil {
		return "", err
	}
	return arch + "-linux", nil
}

// ErrNoFlakeAttr is wrapped by BuildFlake's error for a flake that has
// none of the role's package attributes.
var ErrNoFlakeAttr = errors.New("no image package for the role")

// BuildFlake builds role's image from the flake in dir with b: the first
// of FlakeAttrs that packages.<system> has, and finds the image in its
// output: metadata.tar.* with disk.qcow2 (a VM image) or with
// rootfs.squashfs / rootfs.tar.* (a container image).
func BuildFlake(ctx context.Context, b FlakeBuilder, dir string, role model.IncusGuestRole, system string, log io.Writer) (FlakeImage, error) {
	if !role.Valid() {
		return FlakeImage{}, fmt.Errorf("build image from flake: unsupported role: %s", role)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return FlakeImage{}, fmt.Errorf("flake %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(abs, "flake.nix")); err != nil {
		return FlakeImage{}, fmt.Errorf("flake %s: want a directory with flake.nix: %w", dir, err)
	}
	flake := "path:" + abs
	names, err := b.PackageNames(ctx, flake, system, log)
	if err != nil {
		return FlakeImage{}, fmt.Errorf("build %s image from flake %s: %w", role, dir, err)
	}
	tried := FlakeAttrs(role)
	var attr string
	for _, a := range tried {
		if slices.Contains(names, a) {
			attr = a
			break
		}
	}
	if attr == "" {
		has := "no packages"
		if len(names) > 0 {
			has = "only " + strings.Join(names, ", ")
		}
		return FlakeImage{}, fmt.Errorf("build %s image from flake %s: %w: packages.%s has neither %s nor the legacy %s (it has %s)",
			role, dir, ErrNoFlakeAttr, system, tried[0], tried[1], has)
	}
	img := FlakeImage{Role: role, Attr: attr, Installable: flake + "#packages." + system + "." + attr}
	if img.Output, err = b.Build(ctx, img.Installable, log); err != nil {
		return FlakeImage{}, fmt.Errorf("build %s image from flake %s: %w", role, dir, err)
	}
	if img.Artifact, err = flakeArtifact(img.Output); err != nil {
		return FlakeImage{}, fmt.Errorf("build %s image from flake %s: packages.%s.%s: %w", role, dir, system, attr, err)
	}
	return img, nil
}

// flakeArtifact finds the image in a flake output directory (the
// original's split layout, or a unified tarball), or says what the output
// holds instead.
func flakeArtifact(out string) (Artifact, error) {
	a, err := FindArtifact(out)
	if err == nil && a.Unified != out { // a directory's image, not the output file itself
		return a, nil
	}
	found := "a file"
	if ents, rerr := os.ReadDir(out); rerr == nil {
		var names []string
		for _, e := range ents {
			n := e.Name()
			if e.IsDir() {
				n += "/"
			}
			names = append(names, n)
		}
		sort.Strings(names)
		found = "nothing"
		if len(names) > 0 {
			found = strings.Join(names, ", ")
		}
	}
	why := ""
	if err != nil {
		why = fmt.Sprintf(" (%v)", err)
	}
	return Artifact{}, fmt.Errorf("output %s holds %s%s; want metadata.tar.xz with disk.qcow2 (a VM image) or with rootfs.squashfs or rootfs.tar.* (a container image)",
		out, found, why)
}

// Properties are the image properties of the flake-built image: the role,
// the attribute and the output's store path and hash.
func (f FlakeImage) Properties() map[string]string {
	p := map[string]string{
		RoleProperty:        string(f.Role),
		FlakeAttrProperty:   f.Attr,
		FlakeOutputProperty: f.Output,
	}
	if rest, ok := strings.CutPrefix(f.Output, "/nix/store/"); ok {
		if h, _, ok := strings.Cut(rest, "-"); ok {
			p[FlakeHashProperty] = h
		}
	}
	return p
}

// Kind is "virtual-machine" or "container", as Incus types the image.
func (a Artifact) Kind() string {
	if a.VM {
		return "virtual-machine"
	}
	return "container"
}
