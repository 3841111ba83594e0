package hostlocal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

// Environment refresh outcomes, as the original words them in host.log.
const (
	envReused      = "reused cached nix environment for unchanged source hash"
	envRevalidated = "reused cached nix environment after shell fingerprint revalidation"
	envRefreshed   = "refreshed cached nix environment from nix print-dev-env"
)

// nixFeatures enables flakes on a Nix that has them off by default (Debian's
// nix-bin 2.8).
var nixFeatures = []string{"--extra-experimental-features", "nix-command flakes"}

// mode is how the command runs: straight under /bin/bash (direct shell), or
// under the dev shell's bash after sourcing the cached `nix print-dev-env`
// script. The original's third mode, `nix develop`, is for a job without a
// host-local cache, which a host-local job always has.
type mode struct {
	cached  bool
	shell   string // the flake's dev shell
	script  string // <cache>/dev-env/env.sh
	bash    string // the BASH the script declares, read once
	bashErr error  // why the script declares none
	refresh string // what became of the cached environment, "" for direct
}

func (m mode) String() string {
	if !m.cached {
		return "direct shell"
	}
	return "cached nix print-dev-env .#" + m.shell
}

// argv is the process that runs the compiled command.
func (m mode) argv(command string) ([]string, error) {
	if !m.cached {
		return []string{"/bin/bash", "--noprofile", "--norc", "-lc", command}, nil
	}
	if m.bashErr != nil {
		return nil, m.bashErr
	}
	return []string{m.bash, "--noprofile", "--norc", "-lc", ". " + model.ShellQuote(m.script) + "; " + command}, nil
}

// devEnvState is <cache>/dev-env/state.json.
type devEnvState struct {
	SchemaVersion              int     `json:"schema_version"`
	Shell                      string  `json:"shell"`
	ShellFingerprint           string  `json:"shell_fingerprint"`
	ValidatedSourceContentHash *string `json:"validated_source_content_hash"`
}

// prepareMode picks the environment mode and, for a flake, brings the cached
// dev environment up to date: reused while the source hash is the one it
// was validated for, revalidated when the shell's derivation (`nix eval
// …drvPath`) is unchanged, else rendered again with `nix print-dev-env`.
// The source is the run snapshot, as in the original.
func (j *jobRun) prepareMode(ctx context.Context, workspace string, hash *string) (mode, *executor.Result, error) {
	env := j.x.env()
	if _, in := env("IN_NIX_SHELL"); in || !isFile(filepath.Join(workspace, "flake.nix")) {
		return mode{}, nil, nil
	}
	shell, ok := env("PIKACI_HOST_LOCAL_NIX_SHELL")
	if !ok {
		shell = "default"
	}
	dir := filepath.Join(j.cacheDir, "dev-env")
	m := mode{cached: true, shell: shell, script: filepath.Join(dir, "env.sh")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return m, nil, err
	}
	statePath := filepath.Join(dir, "state.json")
	state := readDevEnvState(statePath)
	var usable bool
	m.bash, usable = devEnvUsable(m.script)
	sameShell := usable && state != nil && state.Shell == shell
	if sameShell && equalHash(state.ValidatedSourceContentHash, hash) {
		m.refresh = envReused
		return m, nil, nil
	}

	src, err := j.flakeSource(ctx)
	if err != nil {
		return m, nil, err
	}
	installable := fmt.Sprintf("path:%s#devShells.%s.%s.drvPath", src, nixSystem(), shell)
	out, res, err := j.runNix(ctx, "eval", "eval", "--raw", installable)
	if err != nil || res != nil {
		return m, res, err
	}
	fingerprint := strings.TrimSpace(out)
	if fingerprint == "" {
		return m, j.envFailure(fmt.Sprintf("nix eval returned an empty host-local shell fingerprint for `.%s`", shell)), nil
	}
	next := devEnvState{SchemaVersion: 1, Shell: shell, ShellFingerprint: fingerprint, ValidatedSourceContentHash: hash}
	if sameShell && state.ShellFingerprint == fingerprint {
		m.refresh = envRevalidated
		return m, nil, writeJSON(statePath, next)
	}

	out, res, err = j.runNix(ctx, "print-dev-env", "print-dev-env", fmt.Sprintf("path:%s#%s", src, shell))
	if err != nil || res != nil {
		return m, res, err
	}
	if err := atomicfile.WriteFile(m.script, []byte(out), 0o644); err != nil {
		return m, nil, err
	}
	m.bash, m.bashErr = devEnvBash(m.script, []byte(out))
	m.refresh = envRefreshed
	return m, nil, writeJSON(statePath, next)
}

// runNix runs `nix <features> args…` under the job's deadline and returns
// its stdout. A nix that is missing, fails or runs out of time fails the
// job with a result; only a cancelled ctx or a broken host is an error.
func (j *jobRun) runNix(ctx context.Context, what string, args ...string) (string, *executor.Result, error) {
	prog, err := exec.LookPath(j.x.nix())
	if err != nil {
		return "", j.envFailure(fmt.Sprintf("`nix` is needed for the workspace's flake dev shell (flake.nix, IN_NIX_SHELL unset) but was not found (%v); %s", err, NixInstallHint)), nil
	}
	nctx, cancel := context.WithDeadline(ctx, j.deadline)
	defer cancel()
	argv := j.limited(append(append([]string{prog}, nixFeatures...), args...))
	cmd := exec.CommandContext(nctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	if j.x.Isolate != nil {
		cmd.Dir, cmd.Env = j.workspace, j.nixEnv()
		if u := j.x.user(); u != nil {
			cmd.SysProcAttr.Credential = u.credential()
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	j.log.Info("running nix", zap.String("nix", what))
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return "", nil, fmt.Errorf("nix %s: %w", what, ctx.Err())
	case nctx.Err() != nil:
		j.hostf("timeout after %ds while running nix %s for the host-local environment", j.job.TimeoutSecs, what)
		r := timedOut(j.job)
		return "", &r, nil
	case err != nil && errors.As(err, new(*exec.ExitError)):
		installable := args[len(args)-1]
		return "", j.envFailure(fmt.Sprintf("nix %s %s failed: %s", what, installable, tail(strings.TrimSpace(stderr.String()), maxNixStderr))), nil
	case err != nil:
		return "", nil, fmt.Errorf("run nix %s for host-local shell: %w", what, err)
	}
	return stdout.String(), nil, nil
}

// maxNixStderr bounds the nix error output kept in a job's message.
const maxNixStderr = 8 << 10

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// envFailure fails the job with the original's context for a failed
// environment setup, and says so in host.log.
func (j *jobRun) envFailure(msg string) *executor.Result {
	msg = fmt.Sprintf("prepare host-local execution environment for job `%s`: %s", j.job.ID, msg)
	j.hostf("%s", msg)
	j.log.Warn("host-local environment failed", zap.String("message", msg))
	r := failed(msg)
	return &r
}

func readDevEnvState(path string) *devEnvState {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var s devEnvState
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	return &s
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

func equalHash(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// devEnvUsable returns the bash the cached script declares, and whether
// the script exists and that bash is still there (a garbage-collected
// store path is not).
func devEnvUsable(script string) (string, bool) {
	if !isFile(script) {
		return "", false
	}
	b, err := os.ReadFile(script)
	if err != nil {
		return "", false
	}
	bash, err := devEnvBash(script, b)
	return bash, err == nil && isFile(bash)
}

// devEnvBash is the BASH='…' that b, the content of script, declares in
// its first 32 lines.
func devEnvBash(script string, b []byte) (string, error) {
	lines := strings.SplitN(string(b), "\n", 33)
	if len(lines) > 32 {
		lines = lines[:32]
	}
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if rest, ok := strings.CutPrefix(l, "BASH='"); ok {
			if p, ok := strings.CutSuffix(rest, "'"); ok {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("cached host-local nix environment %s did not declare a BASH path", script)
}

// nixSystem is the Nix system of this host, as x86_64-linux.
func nixSystem() string {
	arch := runtime.GOARCH
	switch arch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	}
	return arch + "-" + runtime.GOOS
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// waitDelay bounds how long output is still copied once a process is gone
// (or killed): a grandchild that escaped the process group and holds the
// pipes must not hold the job.
const waitDelay = 10 * time.Second
