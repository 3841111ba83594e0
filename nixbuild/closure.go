package nixbuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
)

// Closure returns the store paths that paths need at run time, paths
// included (`nix path-info --recursive`), sorted and without duplicates.
// It asks the store Nix is configured with, so the same call works on a
// single-user store and through a multi-user nix-daemon. The command
// goes to log.
func (b *Builder) Closure(ctx context.Context, paths []string, log io.Writer) ([]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	prog, err := exec.LookPath(b.program())
	if err != nil {
		return nil, fmt.Errorf("%w: `%s` was not found (%v); the closure of staged outputs is asked of Nix", ErrNoNix, b.program(), err)
	}
	out, err := b.nix(ctx, prog, nil, log, "path-info", append([]string{"--recursive", "--"}, paths...)...)
	if err != nil {
		return nil, fmt.Errorf("closure of %s: %w", strings.Join(paths, " "), err)
	}
	closure, err := closureLines(out)
	if err != nil {
		return nil, fmt.Errorf("closure of %s: %w", strings.Join(paths, " "), err)
	}
	return closure, nil
}

// closureLines reads the path-per-line output of `nix path-info`: each
// line an absolute path; an empty answer is an error, not an empty
// closure (the paths themselves belong to it).
func closureLines(b []byte) ([]string, error) {
	var paths []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "/") {
			return nil, fmt.Errorf("nix path-info printed %q, which is not an absolute store path", clip([]byte(line)))
		}
		paths = append(paths, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read nix path-info's output: %w", err)
	}
	if len(paths) == 0 {
		return nil, errors.New("nix path-info printed no store path")
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}
