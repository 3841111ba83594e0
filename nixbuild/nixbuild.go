// Package nixbuild realizes the Nix outputs of staged jobs on the host,
// with the `nix` command line (Debian's nix-bin 2.8 and later): it asks the
// store first and builds only what is not there, so a second run of the
// same snapshot content builds nothing (Nix's own store is the cache).
package nixbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run"
)

// Builder runs `nix` on the host.
type Builder struct {
	// Program is the nix command; "" means "nix" on PATH.
	Program string
	Log     *zap.Logger
}

// Features is passed to every nix call: Nix 2.8 has flakes and the nix
// command behind experimental flags.
var Features = []string{"--extra-experimental-features", "nix-command flakes"}

// ErrNoNix is wrapped by the error for a host without nix.
var ErrNoNix = errors.New("nix is not installed")

func (b *Builder) program() string {
	if b.Program != "" {
		return b.Program
	}
	return "nix"
}

// Realize returns the store path of installable's output: the one already
// in the store (Reused), else the one `nix build` makes. The commands and
// their output go to log. A nix command that fails is a *run.BuildExitError.
func (b *Builder) Realize(ctx context.Context, installable string, log io.Writer) (run.RealizedOutput, error) {
	prog, err := exec.LookPath(b.program())
	if err != nil {
		return run.RealizedOutput{}, fmt.Errorf("%w: `%s` was not found (%v); staged prepared outputs are built with Nix: install it (on Debian: `sudo scripts/nix-up`, which installs nix-bin)", ErrNoNix, b.program(), err)
	}
	out, err := b.nix(ctx, prog, log, "path-info", "--json", installable)
	if err != nil {
		return run.RealizedOutput{}, err
	}
	path, valid, err := pathInfo(out)
	if err != nil {
		return run.RealizedOutput{}, fmt.Errorf("nix path-info %s: %w", installable, err)
	}
	if valid {
		return run.RealizedOutput{Path: path, Reused: true}, nil
	}
	out, err = b.nix(ctx, prog, log, "build", "--accept-flake-config", "--no-link", "--json", installable)
	if err != nil {
		return run.RealizedOutput{}, err
	}
	path, err = outPath(out)
	if err != nil {
		return run.RealizedOutput{}, fmt.Errorf("nix build %s: %w", installable, err)
	}
	return run.RealizedOutput{Path: path}, nil
}

// pathInfo reads `nix path-info --json` of one installable: its store
// path and whether the store has it. Nix up to 2.18 prints an array of
// {"path": …, "valid": false when missing}; later versions an object
// keyed by store path whose value is null when the path is missing.
func pathInfo(b []byte) (path string, valid bool, err error) {
	type info struct {
		Path  string `json:"path"`
		Valid *bool  `json:"valid"`
	}
	var list []info
	if err := json.Unmarshal(b, &list); err == nil {
		if len(list) == 1 && list[0].Path != "" {
			return list[0].Path, list[0].Valid == nil || *list[0].Valid, nil
		}
		return "", false, nil
	}
	// A null value decodes to a nil pointer.
	var byPath map[string]*json.RawMessage
	if err := json.Unmarshal(b, &byPath); err != nil {
		return "", false, fmt.Errorf("decode %q: want an array (Nix 2.18 and older) or an object (newer): %w", clip(b), err)
	}
	if len(byPath) != 1 {
		return "", false, nil
	}
	for p, v := range byPath {
		return p, v != nil, nil
	}
	return "", false, nil
}

// outPath reads the output path from `nix build --json`: the `out` output
// of the last entry, else its only output. (Nix 2.8 has no
// --print-out-paths.)
func outPath(b []byte) (string, error) {
	var built []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(b, &built); err != nil {
		return "", fmt.Errorf("decode %q: %w", clip(b), err)
	}
	if len(built) == 0 {
		return "", errors.New("it returned no output path")
	}
	outs := built[len(built)-1].Outputs
	if p := outs["out"]; p != "" {
		return p, nil
	}
	if len(outs) == 1 {
		for _, p := range outs {
			return p, nil
		}
	}
	return "", fmt.Errorf("no `out` output among %d outputs", len(outs))
}

// nix runs one nix command in its own process group (killed whole when
// ctx ends), with stderr and stdout copied to log; it returns stdout.
func (b *Builder) nix(ctx context.Context, prog string, log io.Writer, args ...string) ([]byte, error) {
	args = append(slices.Clone(Features), args...)
	fmt.Fprintf(log, "[pikaci] %s %s\n", "nix", strings.Join(quoteArgs(args), " "))
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout bytes.Buffer
	lw := &lockedWriter{w: log} // stdout and stderr are copied from two goroutines
	cmd.Stdout = io.MultiWriter(&stdout, lw)
	cmd.Stderr = lw
	start := time.Now()
	err := cmd.Run()
	if n := stdout.Len(); n > 0 && stdout.Bytes()[n-1] != '\n' {
		lw.Write([]byte("\n")) // nix prints its JSON without a newline
	}
	if b.Log != nil {
		b.Log.Debug("nix", zap.Strings("args", args), zap.Duration("took", time.Since(start)), zap.Error(err))
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("nix %s: %w", args[len(Features)], ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		be := &run.BuildExitError{Err: fmt.Errorf("nix %s exited: %w", args[len(Features)], err)}
		if code := ee.ExitCode(); code >= 0 {
			be.Code = &code
		}
		return nil, be
	}
	if err != nil {
		return nil, fmt.Errorf("run nix %s: %w", args[len(Features)], err)
	}
	return stdout.Bytes(), nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"$`\\") {
			a = model.ShellQuote(a)
		}
		out[i] = a
	}
	return out
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
