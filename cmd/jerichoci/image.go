package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/images"
	"jerichoci/model"
)

const (
	defaultIncusProject = "pika-managed-agents"
	defaultArtifactDir  = "result"
)

const imageUsage = `image build|import|build-import --role ROLE [--alias A] [--project P] [--artifact DIR | --flake DIR]

  build         build the role's local runner image into DIR/` + images.ArtifactName + `
  import        import the image in DIR (a unified tarball, or metadata.tar.xz
                with disk.qcow2 or rootfs.tar.*) and point the alias at it
  build-import  both

With --flake DIR, build and build-import build the role's image package of
the flake in DIR with the host's Nix instead (packages.<system>.<attr>: the
role's attribute, else its legacy name), and build-import imports the
output (metadata.tar.xz with disk.qcow2: a VM image; with rootfs.squashfs
or rootfs.tar.*: a container image).

The incusd socket is $INCUS_SOCKET, else the standard paths; --incus-url
reaches a remote incusd over HTTPS instead (docs/INCUS.md).`

func runImage(ctx context.Context, c *cli, args []string) int {
	fs := c.flagSet("image", imageUsage)
	roleText := fs.String("role", "", "guest role: managed-openclaw or pikaci-runner (required)")
	alias := fs.String("alias", "", "image alias (default: the role's default alias)")
	project := fs.String("project", defaultIncusProject, "Incus project")
	artifact := fs.String("artifact", defaultArtifactDir, "image directory (or unified tarball for import)")
	flake := fs.String("flake", "", "build the role's image package of the flake in this directory with Nix (build, build-import)")
	runner := fs.String("runner", "", "static guest runner binary put into the image at "+executor.DefaultRunnerPath+
		" (default: pikaci-incus-run beside this executable, as `make build` leaves it)")
	var remote incusRemote
	remote.fromEnv(c.env)
	remote.flags(fs)

	// The action may come before, between or after the flags, as in the
	// original's `--role R build-import --alias A`.
	rest, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	action := ""
	if len(rest) > 0 {
		action, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return c.usageErr(fs, "unexpected argument %q", rest[0])
	}
	switch action {
	case "build", "import", "build-import":
	case "":
		return c.usageErr(fs, "missing action: build, import or build-import")
	default:
		return c.usageErr(fs, "unknown action %q: want build, import or build-import", action)
	}
	if *roleText == "" {
		return c.usageErr(fs, "--role is required")
	}
	role, err := model.ParseIncusGuestRole(*roleText)
	if err != nil {
		fmt.Fprintf(c.stderr, "unsupported role: %s\n", *roleText)
		return exitUsage
	}
	defaultAlias := *alias == ""
	if defaultAlias {
		*alias = role.DefaultImageAlias()
	}
	if *flake != "" {
		return c.imageFromFlake(ctx, fs, flakeImageArgs{action: action, role: role, dir: *flake, alias: *alias, project: *project, remote: remote})
	}

	if action == "build-import" && defaultAlias && role == model.RolePikaciRunner {
		// The local build is the tiny busybox image; pikaci/dev is the
		// Debian image with the original's guest layout, which
		// scripts/runner-image builds (docs/INCUS.md): don't replace it.
		return c.usageErr(fs, "%s is the Debian runner image scripts/runner-image builds and scripts/incus-up imports; "+
			"give --flake DIR to import the role's image package of a flake, or --alias for the tiny local image", *alias)
	}
	if action == "build" || action == "build-import" {
		runnerBin, err := readGuestRunner(*runner)
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		a, img, err := images.BuildDir(ctx, *artifact, images.Options{Role: role,
			Files: []images.File{{Path: executor.DefaultRunnerPath, Mode: 0o755, Data: runnerBin}}})
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		fmt.Fprintf(c.stdout, "built %s image %s (fingerprint %s)\n", role, a.Unified, img.Fingerprint)
	}
	if action == "import" || action == "build-import" {
		a, err := images.FindArtifact(*artifact)
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		cl, err := c.imageIncus(ctx, *project, remote)
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		defer cl.Close()
		desc := fmt.Sprintf("jerichoci %s runner image", role)
		res, err := images.Import(ctx, incus.NewImageStore(cl), a, *alias, desc)
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		fmt.Fprintf(c.stdout, "%s\n", describeImport(res, *alias, *project))
	}
	return exitOK
}

// readGuestRunner reads the guest runner binary: path, or pikaci-incus-run
// beside the running executable.
func readGuestRunner(path string) ([]byte, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the guest runner: %w", err)
		}
		path = filepath.Join(filepath.Dir(exe), "pikaci-incus-run")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the guest runner %s: %w (build it with `make build`, or pass --runner)", path, err)
	}
	return b, nil
}

func describeImport(r images.ImportResult, alias, project string) string {
	where := fmt.Sprintf("alias %s in project %s", alias, project)
	var s string
	switch r.Action {
	case images.Unchanged:
		s = fmt.Sprintf("%s: unchanged (%s)", where, r.Fingerprint)
	case images.Aliased:
		s = fmt.Sprintf("%s: now points at the existing image %s", where, r.Fingerprint)
	default:
		s = fmt.Sprintf("%s: uploaded image %s", where, r.Fingerprint)
	}
	if r.Previous != "" {
		s += fmt.Sprintf(", was %s", r.Previous)
		if r.Pruned {
			s += " (deleted)"
		}
	}
	return s
}
