package nixbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
)

// PackageNames lists the attribute names of flake's packages.<system>
// (flake is a flake reference such as path:/abs/dir), so a caller can
// choose among several names before it builds one. It runs `nix eval
// --json FLAKE#packages.SYSTEM --apply builtins.attrNames`, whose output,
// a JSON array of strings, is the same from Nix 2.8 on. Like Realize it
// goes through the daemon with the flake's nixConfig ignored, and run as
// root it first adds the flake's directory to the store and evaluates that
// as EvalUser. A flake without packages.<system> fails the nix call (a
// *run.BuildExitError); nix's message is in log.
func (b *Builder) PackageNames(ctx context.Context, flake, system string, log io.Writer) ([]string, error) {
	prog, err := exec.LookPath(b.program())
	if err != nil {
		return nil, fmt.Errorf("%w: `%s` was not found (%v); flake packages are built with Nix: install it (on Debian: `sudo scripts/nix-up`, which installs nix-bin)", ErrNoNix, b.program(), err)
	}
	as, err := b.identity()
	if err != nil {
		return nil, err
	}
	installable := flake + "#packages." + system
	if as != nil {
		if installable, err = b.addSource(ctx, prog, log, installable); err != nil {
			return nil, err
		}
	}
	out, err := b.nix(ctx, prog, as, log, "eval", "--no-write-lock-file", "--json", installable, "--apply", "builtins.attrNames")
	if err != nil {
		return nil, fmt.Errorf("list the packages of %s for %s: %w", flake, system, err)
	}
	return attrNames(out)
}

// attrNames decodes the JSON array of names `nix eval --json` prints,
// sorted.
func attrNames(b []byte) ([]string, error) {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return nil, fmt.Errorf("nix eval printed %q, want a JSON array of attribute names: %w", clip(b), err)
	}
	slices.Sort(names)
	return names, nil
}
