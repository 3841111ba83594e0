// Package nixbuild realizes the Nix outputs of staged jobs on the host,
// with the `nix` command line: it asks the store first and builds only
// what is not there, so a second run of the same snapshot content builds
// nothing (Nix's own store is the cache).
//
// Tested with Debian 12's Nix 2.8 and Debian 13's 2.26 (scripts/nix-up,
// scripts/nix-current-up; docs/INCUS.md, "Nix versions"). The JSON the
// calls read changed between them (`nix path-info --json`: an array up to
// 2.18, an object keyed by store path later); each decoder reads both
// shapes, checked against real output of both versions in
// testdata/fixtures/nix/. The other calls print plain lines.
//
// Every nix call goes through the host's nix-daemon (`--store daemon`):
// the daemon alone writes the store, and builds run in its sandbox as its
// build users (docs/SECURITY.md). No call passes --accept-flake-config,
// --impure or any option that weakens the sandbox, and each sets
// accept-flake-config to false, so a flake's nixConfig is never applied.
//
// The flake itself is evaluated by the nix client, outside the sandbox,
// and a flake can copy whatever its evaluator reads into the store (a
// `path:` input). So when jerichoci runs as root, the snapshot is first
// added to the store as it is, and every evaluating call runs as
// EvalUser (DefaultEvalUser, made by scripts/nix-up) with a scrubbed
// environment and a private, throwaway HOME: it reads the world-readable
// store and nothing of root's, and the daemon counts it as an untrusted
// user, whose settings cannot loosen the daemon's sandbox.
//
// CheckSandboxed tells whether the host's Nix builds that way at all.
package nixbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"jerichoci/internal/writers"
	"jerichoci/model"
	"jerichoci/run"
)

// Builder runs `nix` on the host.
type Builder struct {
	// Program is the nix command, a path or a name on PATH; "" means
	// "nix" on PATH.
	Program string
	// EvalUser is the user nix runs as when this process is root; ""
	// means DefaultEvalUser. A process that is not root runs nix as
	// itself.
	EvalUser string
	Log      *zap.Logger
}

// DefaultEvalUser is the unprivileged user scripts/nix-up creates for
// jerichoci's nix calls when jerichoci runs as root.
const DefaultEvalUser = "jerichoci-nix"

// Features is passed to every nix call: Nix 2.8 has flakes and the nix
// command behind experimental flags.
var Features = []string{"--extra-experimental-features", "nix-command flakes"}

// Through is passed to every nix call after its subcommand: the store is
// the nix-daemon's (never a local store the caller writes itself, as root
// could), and a flake's nixConfig is ignored rather than applied.
var Through = []string{"--store", "daemon", "--option", "accept-flake-config", "false"}

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
	as, err := b.identity()
	if err != nil {
		return run.RealizedOutput{}, err
	}
	if as != nil {
		// Root reads the snapshot (0700, root's) into the store; the
		// unprivileged evaluator reads it there. Same content, same
		// source store path, same derivations as `path:` of the snapshot.
		if installable, err = b.addSource(ctx, prog, log, installable); err != nil {
			return run.RealizedOutput{}, err
		}
	}
	out, err := b.nix(ctx, prog, as, log, "path-info", "--no-write-lock-file", "--json", installable)
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
	out, err = b.nix(ctx, prog, as, log, "build", "--no-write-lock-file", "--no-link", "--json", installable)
	if err != nil {
		return run.RealizedOutput{}, err
	}
	path, err = outPath(out)
	if err != nil {
		return run.RealizedOutput{}, fmt.Errorf("nix build %s: %w", installable, err)
	}
	return run.RealizedOutput{Path: path}, nil
}

// addSource adds the directory of a `path:` installable to the store and
// returns the installable of that store path; other installables are
// returned as they are.
func (b *Builder) addSource(ctx context.Context, prog string, log io.Writer, installable string) (string, error) {
	ref, attr, _ := strings.Cut(installable, "#")
	dir, ok := strings.CutPrefix(ref, "path:")
	if !ok || strings.Contains(dir, "?") {
		return installable, nil
	}
	out, err := b.nix(ctx, prog, nil, log, "store add-path", "--name", "source", dir)
	if err != nil {
		return "", err
	}
	src, err := addedPath(out)
	if err != nil {
		return "", fmt.Errorf("nix store add-path %s: %w", dir, err)
	}
	if attr == "" {
		return "path:" + src, nil
	}
	return "path:" + src + "#" + attr, nil
}

// addedPath reads what `nix store add-path` printed: one store path.
func addedPath(out []byte) (string, error) {
	src := strings.TrimSpace(string(out))
	if !strings.HasPrefix(src, "/nix/store/") || strings.ContainsAny(src, "\n#?") {
		return "", fmt.Errorf("printed %q, want a store path", clip(out))
	}
	return src, nil
}

// evalIdentity is who a nix call runs as when not as this process.
type evalIdentity struct {
	name     string
	uid, gid uint32
}

// identity returns who nix runs as: nil for this process itself (not
// root), else EvalUser, which must exist.
func (b *Builder) identity() (*evalIdentity, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := b.EvalUser
	if name == "" {
		name = DefaultEvalUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: run as root, jerichoci runs nix as the user %s, and looking it up failed (%v): create it (`sudo scripts/nix-up` does)", ErrNoEvalUser, name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil || uid == 0 {
		return nil, fmt.Errorf("%w: the user %s (uid %s, gid %s) must be an unprivileged user with numeric ids", ErrNoEvalUser, name, u.Uid, u.Gid)
	}
	return &evalIdentity{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// ErrNoEvalUser is wrapped by the error for a root process whose
// EvalUser is missing or unusable.
var ErrNoEvalUser = errors.New("no user to evaluate flakes as")

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

// nix runs `nix <Features> sub <Through> args…` in its own process group
// (killed whole when ctx ends), as `as` when not nil, with stderr and
// stdout copied to log; it returns stdout. sub may be two words
// ("store add-path").
func (b *Builder) nix(ctx context.Context, prog string, as *evalIdentity, log io.Writer, sub string, args ...string) ([]byte, error) {
	args = slices.Concat(Features, strings.Fields(sub), Through, args)
	who := ""
	if as != nil {
		who = " (as " + as.name + ")"
	}
	fmt.Fprintf(log, "[pikaci] %s %s%s\n", b.program(), strings.Join(quoteArgs(args), " "), who)
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if as != nil {
		home, err := os.MkdirTemp("", "jerichoci-nix-home-")
		if err != nil {
			return nil, fmt.Errorf("nix %s: home for %s: %w", sub, as.name, err)
		}
		defer os.RemoveAll(home)
		if err := os.Chown(home, int(as.uid), int(as.gid)); err != nil {
			return nil, fmt.Errorf("nix %s: home for %s: %w", sub, as.name, err)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: as.uid, Gid: as.gid, Groups: []uint32{}}
		cmd.Env = evalEnv(home)
		cmd.Dir = home
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout bytes.Buffer
	lw := writers.NewLocked(log) // stdout and stderr are copied from two goroutines
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
		return nil, fmt.Errorf("nix %s: %w", sub, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		be := &run.BuildExitError{Err: fmt.Errorf("nix %s exited: %w", sub, err)}
		if code := ee.ExitCode(); code >= 0 {
			be.Code = &code
		}
		return nil, be
	}
	if err != nil {
		return nil, fmt.Errorf("run nix %s: %w", sub, err)
	}
	return stdout.Bytes(), nil
}

// evalEnv is the whole environment of a nix call run as the eval user:
// nothing of this process's but PATH and the locale.
func evalEnv(home string) []string {
	env := []string{"HOME=" + home, "XDG_CACHE_HOME=" + home + "/.cache", "TMPDIR=" + home}
	for _, k := range []string{"PATH", "LANG", "LC_ALL"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
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
