// Package hostlocal runs host-local jobs (runtime host_process, command
// host_shell) on the worker host itself, as the original pikaci does
// (docs/CONTRACTS.md, "Host-local jobs").
//
// Each job works in the cache of its scope, <state>/cache/host-local/<scope>/
// (see Scope): it holds an exclusive flock on <cache>/.lock for the whole
// job, so jobs of one scope run one at a time; it reuses <cache>/workspace/
// while that copy has the run snapshot's content hash, else copies the
// snapshot there afresh; and when the workspace has a flake.nix and the
// worker is not already inside a Nix shell (IN_NIX_SHELL), it runs the
// command in the flake's dev shell, cached in <cache>/dev-env/ from
// `nix print-dev-env`. The command runs under bash in its own process group
// with cwd = the workspace; a timeout or a cancelled context kills the whole
// group. Its output goes raw to the job's host log, its verdict to
// <job>/artifacts/result.json.
//
// With an Isolation (`jerichoci serve`) the command and its nix get a
// scrubbed environment, a fresh HOME (<cache>/home) and TMPDIR
// (<cache>/tmp), and may run as an unprivileged user: see isolate.go and
// docs/SECURITY.md. Jobs of that user run one at a time on the host, under
// a host-wide lock taken before the scope's, with RLIMIT_NPROC set, and
// every process of the user is killed when a job ends (userlock.go,
// reap.go).
package hostlocal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/model"
)

// MsgRootCommand is the original's rejection of a root command.
const MsgRootCommand = "host-local jobs do not support root commands"

// NixInstallHint says how to get Nix; it ends the message of a job that
// needs nix on a host without it.
const NixInstallHint = "install Nix (on Debian: `sudo scripts/nix-up`, which installs nix-bin)"

// Executor runs host-local jobs. Jobs of different scopes may run at the same
// time; jobs of one scope wait for each other on the cache lock.
type Executor struct {
	// StateRoot is the state root; caches go below <StateRoot>/cache.
	StateRoot string
	// Env is the worker's environment as the original reads it
	// (IN_NIX_SHELL, PIKACI_HOST_LOCAL_NIX_SHELL, OPENCLAW_DIR); nil means
	// the process environment. The command itself inherits the process
	// environment.
	Env model.LookupEnv
	// Nix is the nix program, "nix" (looked up on PATH) when empty.
	Nix string
	// Isolate, when set, scrubs the environment of the command and its
	// nix and, with a User, runs them as that user (see Isolation);
	// nil runs them as the worker's own process, with its whole
	// environment, as the original does (`jerichoci run`).
	Isolate *Isolation
	Log     *zap.Logger
	// Now stamps host.log lines and result.json; time.Now when nil.
	// Deadlines use the monotonic clock, not Now.
	Now func() time.Time
}

// Execute runs one host-local job. A command that ran and failed, timed out,
// or could not get its cache lock or Nix environment in time is a failed
// Result; a job that is not a host-local shell job is a plain error; a
// failure of the host (files, flock, spawning) is an *executor.Error; a
// cancelled ctx kills the command and returns an error wrapping ctx.Err().
func (x *Executor) Execute(ctx context.Context, job executor.Job) (executor.Result, error) {
	j := &jobRun{x: x, job: job, host: job.HostLog}
	if j.host == nil {
		j.host = io.Discard
	}
	j.log = x.logger().With(zap.String("run_id", job.RunID), zap.String("job", job.ID), zap.String("scope", job.HostCacheScope))
	command, err := j.validate()
	if err != nil {
		return executor.Result{}, err
	}
	j.deadline = time.Now().Add(time.Duration(job.TimeoutSecs) * time.Second)
	var res executor.Result
	if err = ctx.Err(); err == nil {
		res, err = j.run(ctx, command)
	}
	if err != nil {
		if ctx.Err() != nil {
			j.log.Info("host-local job cancelled", zap.Error(err))
			if !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return executor.Result{}, fmt.Errorf("host-local job `%s`: %w", job.ID, err)
		}
		j.log.Warn("host-local job failed on the host", zap.Error(err))
		return executor.Result{}, &executor.Error{Err: err}
	}
	j.log.Info("host-local job finished", zap.String("status", string(res.Status)), zap.String("message", res.Message))
	return res, nil
}

func (x *Executor) logger() *zap.Logger {
	if x.Log == nil {
		return zap.NewNop()
	}
	return x.Log.Named("hostlocal")
}

func (x *Executor) env() model.LookupEnv {
	if x.Env != nil {
		return x.Env
	}
	return model.OSEnv
}

// user is who host-local jobs run as when that is not the daemon itself.
func (x *Executor) user() *User {
	if x.Isolate == nil {
		return nil
	}
	return x.Isolate.User
}

func (x *Executor) now() time.Time {
	if x.Now != nil {
		return x.Now()
	}
	return time.Now()
}

func (x *Executor) nix() string {
	if x.Nix != "" {
		return x.Nix
	}
	return "nix"
}

type jobRun struct {
	x        *Executor
	job      executor.Job
	host     io.Writer
	log      *zap.Logger
	deadline time.Time
	cacheDir string
	// workspace is <cache>/workspace; hash the run snapshot's content hash.
	workspace string
	hash      *string
	// freshWorkspace says the workspace was copied from the snapshot by
	// this job, not reused.
	freshWorkspace bool
	// home, tmp and staged are the per-job HOME, TMPDIR and, for a job
	// run as another user, the artifacts directory it writes (<cache>/home,
	// <cache>/tmp, <cache>/artifacts); finish closes the scope and hands staged back.
	home   string
	tmp    string
	staged string
	finish func() error
}

// hostf writes one "[pikaci] …" line to the job's host log.
func (j *jobRun) hostf(format string, a ...any) {
	fmt.Fprintf(j.host, "[pikaci] "+format+"\n", a...)
}

// validate checks what the plan should already have ensured and returns
// the compiled command, `bash --noprofile --norc -lc '<command>'`, which the
// original runs inside its own shell in every environment mode.
func (j *jobRun) validate() (string, error) {
	job := j.job
	if job.Runtime.Kind != model.RuntimeHostProcess {
		return "", fmt.Errorf("job `%s`: the host-local executor runs only host_process jobs, got runtime %q", job.ID, job.Runtime.Kind)
	}
	if job.Command.Kind == model.CmdShellAsRoot {
		return "", errors.New(MsgRootCommand)
	}
	if job.Command.Kind != model.CmdHostShell {
		return "", fmt.Errorf("host-local job `%s` must use a host_shell command, got kind %q", job.ID, job.Command.Kind)
	}
	command, root, err := job.Command.Compile()
	if err != nil {
		return "", fmt.Errorf("host-local job `%s`: %w", job.ID, err)
	}
	if root {
		return "", errors.New(MsgRootCommand)
	}
	if job.TimeoutSecs == 0 {
		return "", fmt.Errorf("host-local job `%s`: timeout_secs must be > 0, got 0", job.ID)
	}
	if !validScope(job.HostCacheScope) {
		return "", fmt.Errorf("host-local job `%s`: host-local cache scope %q must be non-empty ASCII letters, digits and '-'", job.ID, job.HostCacheScope)
	}
	if j.x.StateRoot == "" || job.SnapshotDir == "" || job.JobDir == "" {
		return "", fmt.Errorf("host-local job `%s` needs a state root, a snapshot and a job directory", job.ID)
	}
	if j.x.user() != nil && os.Geteuid() != 0 {
		return "", fmt.Errorf("host-local job `%s`: running it as %s needs root, this process is uid %d", job.ID, j.x.user().Name, os.Geteuid())
	}
	return command, nil
}

// run is the job after validation; its errors are host failures, or the
// context's end.
func (j *jobRun) run(ctx context.Context, command string) (res executor.Result, err error) {
	x, job := j.x, j.job
	j.cacheDir = filepath.Join(x.StateRoot, "cache", "host-local", job.HostCacheScope)
	artifacts := filepath.Join(job.JobDir, "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return executor.Result{}, err
	}
	if err := touch(filepath.Join(artifacts, "guest.log")); err != nil {
		return executor.Result{}, err
	}
	if x.user() != nil {
		// Directories made since the last job are closed too.
		if err := closeStateRoot(x.StateRoot); err != nil {
			return executor.Result{}, fmt.Errorf("close the state root to host-local jobs: %w", err)
		}
	}

	// The user's lock before the scope's: a job holding a scope lock
	// never waits for the user, so jobs of one user cannot deadlock.
	unlockUser, err := j.lockUser(ctx)
	if err != nil {
		return executor.Result{}, err
	}
	defer unlockUser()
	if x.user() != nil {
		// The time spent waiting for the user is not the job's.
		j.deadline = time.Now().Add(time.Duration(job.TimeoutSecs) * time.Second)
	}

	unlock, lres, err := j.lock(ctx)
	if err != nil || lres != nil {
		return model.Value(lres), err
	}
	defer unlock()

	started := time.Now()
	snap, err := readSnapshotMetadata(job.SnapshotDir)
	if err != nil {
		return executor.Result{}, err
	}
	j.workspace = filepath.Join(j.cacheDir, "workspace")
	j.hash = snap.ContentHash
	refresh, err := j.refreshWorkspace(ctx)
	if err != nil {
		return executor.Result{}, fmt.Errorf("refresh host-local workspace for job `%s`: %w", job.ID, err)
	}
	j.hostf("host-local workspace %s in %.3fs", refresh, time.Since(started).Seconds())
	j.log.Info("host-local workspace ready", zap.String("workspace", refresh))

	j.hostf("starting host-local job `%s` at %s", job.ID, model.FormatTimestamp(x.now()))
	j.hostf("host-local command: %s", command)

	jobArtifacts := artifacts
	if x.Isolate != nil {
		if jobArtifacts, err = j.isolate(ctx, artifacts); err != nil {
			return executor.Result{}, err
		}
		defer func() {
			if ferr := j.finishIsolated(); ferr != nil && err == nil {
				res, err = executor.Result{}, ferr
			}
		}()
	}

	envStarted := time.Now()
	mode, mres, err := j.prepareMode(ctx, j.workspace, snap.ContentHash)
	if err != nil {
		return executor.Result{}, fmt.Errorf("prepare host-local execution environment for job `%s`: %w", job.ID, err)
	}
	if mres != nil {
		return *mres, nil
	}
	j.hostf("host-local execution environment: %s", mode)
	if mode.refresh != "" {
		j.hostf("host-local environment %s in %.3fs", mode.refresh, time.Since(envStarted).Seconds())
	}
	j.log.Info("host-local environment ready", zap.String("mode", mode.String()), zap.String("refresh", mode.refresh))

	argv, err := mode.argv(command)
	if err != nil {
		return executor.Result{}, err
	}
	cargoHome := filepath.Join(x.StateRoot, "cache", "cargo-home")
	if x.user() != nil {
		// The shared one would let one target's jobs change the crates
		// another target's jobs build with.
		cargoHome = filepath.Join(j.cacheDir, "cargo-home")
	}
	cargoTarget := filepath.Join(j.cacheDir, "cargo-target")
	for _, d := range []string{cargoHome, cargoTarget} {
		if err := j.jobDir(d); err != nil {
			return executor.Result{}, err
		}
	}
	vars := []string{"ARTIFACTS=" + jobArtifacts, "CARGO_HOME=" + cargoHome, "CARGO_TARGET_DIR=" + cargoTarget}
	if dir, ok := j.openclawDir(snap.SourceRoot, j.workspace); ok {
		vars = append(vars, "OPENCLAW_DIR="+dir)
	}
	for _, name := range slices.Sorted(maps.Keys(job.SecretEnv)) {
		vars = append(vars, name+"="+job.SecretEnv[name])
	}
	var env []string
	if x.Isolate != nil {
		env = append(j.baseEnv(), vars...)
	} else {
		env = append(os.Environ(), vars...)
	}

	exit, err := j.spawn(ctx, j.limited(argv), j.workspace, env)
	if err != nil {
		return executor.Result{}, err
	}
	if x.Isolate != nil {
		// The artifacts are back in the job's directory, root's, before
		// result.json goes there.
		if err := j.finishIsolated(); err != nil {
			return executor.Result{}, err
		}
	}
	if exit.timedOut {
		return timedOut(job), nil
	}
	j.hostf("host-local job %s at %s", exit.describe(), model.FormatTimestamp(x.now()))

	code := exit.code
	out := executor.Result{Status: model.StatusPassed, ExitCode: &code, Message: "host-local command passed"}
	verdict := model.TerminalCompleted
	if code != 0 {
		out.Status, out.Message = model.StatusFailed, fmt.Sprintf("host-local command exited with %d", code)
		verdict = model.TerminalFailed
	}
	// The terminal result, as a guest writes it (docs/CONTRACTS.md, "Guest artifacts").
	result := model.TerminalResult{SchemaVersion: 1, Status: verdict, ExitCode: &code,
		FinishedAt: model.At(x.now()), Message: out.Message}
	b, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return executor.Result{}, fmt.Errorf("encode host-local result: %w", err)
	}
	if err := os.WriteFile(filepath.Join(artifacts, "result.json"), b, 0o644); err != nil {
		return executor.Result{}, err
	}
	return out, nil
}

// timedOut is the original's outcome of a job that ran out of time.
func timedOut(job executor.Job) executor.Result {
	return failed(fmt.Sprintf("timed out after %ds", job.TimeoutSecs))
}

func failed(msg string) executor.Result {
	return executor.Result{Status: model.StatusFailed, Message: msg}
}

// openclawDir resolves OPENCLAW_DIR as the original does: the worker's
// OPENCLAW_DIR (a relative one is taken from the source root), else the
// workspace's openclaw/ when it has a package.json.
func (j *jobRun) openclawDir(sourceRoot, workspace string) (string, bool) {
	if p, ok := j.x.env()("OPENCLAW_DIR"); ok {
		if filepath.IsAbs(p) {
			return p, true
		}
		joined := filepath.Join(sourceRoot, p)
		if abs, err := filepath.EvalSymlinks(joined); err == nil {
			return abs, true
		}
		return joined, true
	}
	dir := filepath.Join(workspace, "openclaw")
	if fi, err := os.Stat(filepath.Join(dir, "package.json")); err == nil && fi.Mode().IsRegular() {
		return dir, true
	}
	return "", false
}

// readSnapshotMetadata reads the run snapshot's pikaci-snapshot.json.
func readSnapshotMetadata(dir string) (model.SnapshotMetadata, error) {
	var m model.SnapshotMetadata
	p := filepath.Join(dir, model.SnapshotMetadataFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", p, err)
	}
	return m, nil
}

func touch(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
