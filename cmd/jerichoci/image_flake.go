package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"jerichoci/executor/incus"
	"jerichoci/images"
	"jerichoci/model"
	"jerichoci/nixbuild"
)

// flakeImageArgs are the parsed arguments of `image build|build-import --flake`.
type flakeImageArgs struct {
	action         string
	role           model.IncusGuestRole
	dir            string
	alias, project string
	remote         incusRemote
}

// imageFromFlake builds the role's image package of the flake with the
// host's Nix and, for build-import, imports its output under the alias
// with the role, the attribute and the output as image properties
// (docs/INCUS.md, "Role images from a flake").
func (c *cli) imageFromFlake(ctx context.Context, fs *flag.FlagSet, a flakeImageArgs) int {
	var clash []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "artifact" || f.Name == "runner" {
			clash = append(clash, "--"+f.Name)
		}
	})
	if len(clash) > 0 {
		return c.usageErr(fs, "%s: not with --flake (the flake's output is the image)", strings.Join(clash, " and "))
	}
	if a.action == "import" {
		return c.usageErr(fs, "--flake: want build or build-import (import takes --artifact DIR)")
	}
	system, err := images.NixSystem()
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	// nix's own output is progress: stderr, so stdout keeps the results.
	img, err := images.BuildFlake(ctx, flakeNix{&nixbuild.Builder{}}, a.dir, a.role, system, c.stderr)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	files := make([]string, 0, 2)
	for _, f := range img.Artifact.Files() {
		files = append(files, filepath.Base(f))
	}
	fmt.Fprintf(c.stdout, "built %s image packages.%s.%s: %s (%s image: %s)\n",
		a.role, system, img.Attr, img.Output, img.Artifact.Kind(), strings.Join(files, " + "))
	if a.action == "build" {
		return exitOK
	}
	cl, err := c.imageIncus(ctx, a.project, a.remote)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer cl.Close()
	desc := fmt.Sprintf("jerichoci %s image from flake package %s", a.role, img.Attr)
	store := incus.NewImageStore(cl).WithProperties(img.Properties())
	res, err := images.Import(ctx, store, img.Artifact, a.alias, desc)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	fmt.Fprintf(c.stdout, "%s (%s)\n", describeImport(res, a.alias, a.project), img.Artifact.Kind())
	return exitOK
}

// flakeNix is the host's Nix as images.BuildFlake uses it.
type flakeNix struct{ *nixbuild.Builder }

func (n flakeNix) Build(ctx context.Context, installable string, log io.Writer) (string, error) {
	out, err := n.Realize(ctx, installable, log)
	return out.Path, err
}
