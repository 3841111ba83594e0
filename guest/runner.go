// Package guest is the runner that executes a job inside the guest, as the
// original's NixOS runner does (docs/CONTRACTS.md, "The guest request and
// the runner"): it reads the schema-2 request, runs the command under a
// timeout as uid 1000 (or root), tees the output to logs/guest.log, and
// writes status.json, events.jsonl and the authoritative result.json
// atomically.
package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

// Runner runs one guest request. Zero values are the real guest's settings.
type Runner struct {
	Dir      string // /run/pika-cloud
	Workdir  string // /workspace/snapshot
	UID, GID uint32 // the unprivileged user, 1000
	UserHome string // /home/pikaci
	Stdout   io.Writer
	Stderr   io.Writer
	Now      func() time.Time
	// WaitForRequest: start before the request exists and wait for it (a
	// warm pool starts the runner ahead of the job, which then only writes
	// the request on the host).
	WaitForRequest bool

	seq uint64
	mu  sync.Mutex
}

// Main runs the request at path and returns the process exit code: the
// command's, 124 on timeout, 2 when the bootstrap failed.
func (r *Runner) Main(ctx context.Context, requestPath string) int {
	r.defaults()
	if err := os.MkdirAll(filepath.Join(r.Dir, "logs"), 0o755); err != nil {
		fmt.Fprintf(r.Stderr, "Incus guest bootstrap failed: %v\n", err)
		return 2
	}
	_ = os.MkdirAll(filepath.Join(r.Dir, "artifacts"), 0o755)
	logf, err := os.OpenFile(filepath.Join(r.Dir, "logs", "guest.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return r.bootstrapFailed(fmt.Errorf("open guest log: %w", err))
	}
	defer logf.Close()
	fmt.Fprintf(logf, "[pikaci] incus guest booted at %s\n", r.stamp())
	r.state(model.GuestBooted, "incus guest booted")
	if r.WaitForRequest {
		if err := waitForFile(ctx, requestPath); err != nil {
			return r.bootstrapFailed(fmt.Errorf("wait for the request %s: %w", requestPath, err))
		}
	}

	req, err := ReadRequest(requestPath)
	if err != nil {
		return r.bootstrapFailed(err)
	}
	home := r.UserHome
	if req.RunAsRoot {
		home = "/root"
	}
	secretEnv, err := readSecretEnv(req.SecretEnvFile)
	if err != nil {
		return r.bootstrapFailed(err)
	}
	r.state(model.GuestStarting, "starting test command")
	code, timedOut, err := r.run(ctx, req, home, secretEnv, logf)
	if err != nil {
		return r.bootstrapFailed(err)
	}
	res := model.TerminalResult{SchemaVersion: 1, ExitCode: ptr(int32(code)), FinishedAt: model.At(r.Now())}
	switch {
	case code == 0:
		res.Status, res.Message = model.TerminalCompleted, "test passed"
	default:
		res.Status, res.Message = model.TerminalFailed, fmt.Sprintf("test command exited with %d", code)
	}
	if timedOut {
		fmt.Fprintf(logf, "[pikaci] test command timed out after %ds\n", req.TimeoutSecs)
	}
	if err := r.writeJSON("result.json", res); err != nil {
		fmt.Fprintf(r.Stderr, "write result: %v\n", err)
		return 2
	}
	st := model.GuestCompleted
	if code != 0 {
		st = model.GuestFailed
	}
	r.state(st, res.Message)
	return code
}

func (r *Runner) defaults() {
	if r.Dir == "" {
		r.Dir = "/run/pika-cloud"
	}
	if r.Workdir == "" {
		r.Workdir = "/workspace/snapshot"
	}
	if r.UID == 0 && r.GID == 0 {
		r.UID, r.GID = 1000, 1000
	}
	if r.UserHome == "" {
		r.UserHome = "/home/pikaci"
	}
	if r.Stdout == nil {
		r.Stdout = os.Stdout
	}
	if r.Stderr == nil {
		r.Stderr = os.Stderr
	}
	if r.Now == nil {
		r.Now = time.Now
	}
}

// ReadRequest reads a schema-2 request strictly: exactly the four fields.
func ReadRequest(path string) (model.GuestRequest, error) {
	var req model.GuestRequest
	b, err := os.ReadFile(path)
	if err != nil {
		return req, fmt.Errorf("read guest request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var raw struct {
		SchemaVersion *int             `json:"schema_version"`
		Command       *string          `json:"command"`
		TimeoutSecs   *json.RawMessage `json:"timeout_secs"`
		RunAsRoot     *bool            `json:"run_as_root"`
		SecretEnvFile *string          `json:"secret_env_file"`
	}
	if err := dec.Decode(&raw); err != nil {
		return req, fmt.Errorf("parse guest request %s: %w", path, err)
	}
	var errs []error
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		errs = append(errs, errors.New("guest request field `schema_version` must be 2"))
	}
	if raw.Command == nil || *raw.Command == "" {
		errs = append(errs, errors.New("guest request field `command` must be a non-empty string"))
	}
	var secs uint64
	if raw.TimeoutSecs != nil {
		secs, err = strconv.ParseUint(string(*raw.TimeoutSecs), 10, 64)
	}
	if raw.TimeoutSecs == nil || err != nil || secs == 0 {
		errs = append(errs, errors.New("guest request field `timeout_secs` must be an integer > 0"))
	}
	if raw.RunAsRoot == nil {
		errs = append(errs, errors.New("guest request field `run_as_root` must be a boolean"))
	}
	if raw.SecretEnvFile != nil && !strings.HasPrefix(*raw.SecretEnvFile, "/") {
		errs = append(errs, fmt.Errorf("guest request field `secret_env_file` must be an absolute path, got %q", *raw.SecretEnvFile))
	}
	if len(errs) > 0 {
		return req, errors.Join(errs...)
	}
	req = model.GuestRequest{SchemaVersion: 2, Command: *raw.Command, TimeoutSecs: secs, RunAsRoot: *raw.RunAsRoot}
	if raw.SecretEnvFile != nil {
		req.SecretEnvFile = *raw.SecretEnvFile
	}
	return req, nil
}

// run executes `bash --noprofile --norc -lc <command>` with the timeout,
// merging stdout and stderr into the guest log while passing each to the
// runner's own stream.
func (r *Runner) run(ctx context.Context, req model.GuestRequest, home string, secretEnv []string, logf io.Writer) (code int, timedOut bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(req.TimeoutSecs)*time.Second)
	defer cancel()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-lc", req.Command)
	cmd.Dir = r.Workdir
	if _, err := os.Stat(r.Workdir); err != nil {
		cmd.Dir = "/"
	}
	cmd.Env = make([]string, 0, len(model.GuestEnv)+len(secretEnv))
	for _, kv := range model.GuestEnv {
		if kv == "HOME=" {
			kv += home
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, secretEnv...)
	var logMu sync.Mutex
	cmd.Stdout = io.MultiWriter(r.Stdout, &syncWriter{mu: &logMu, w: logf})
	cmd.Stderr = io.MultiWriter(r.Stderr, &syncWriter{mu: &logMu, w: logf})
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !req.RunAsRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.UID, Gid: r.GID}
	}
	if err := cmd.Start(); err != nil {
		return 0, false, fmt.Errorf("start test command: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Like coreutils timeout: TERM the process group, then KILL, exit
		// 124. The same when the runner itself is signalled (its context
		// ends): the KILL comes within killGrace, before the executor's own
		// SIGKILL of the runner (5 s), so the group never outlives it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(killGrace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		return 124, true, nil
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, false, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), false, nil
		}
		return ee.ExitCode(), false, nil
	}
	return 0, false, fmt.Errorf("wait for test command: %w", err)
}

// readSecretEnv reads the request's secret environment file (a JSON
// object of names to values), deletes it, and returns NAME=value entries
// sorted by name; none when path is "".
func readSecretEnv(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret environment: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("remove secret environment file: %w", err)
	}
	var vals map[string]string
	if err := json.Unmarshal(b, &vals); err != nil {
		return nil, fmt.Errorf("parse secret environment %s: expected a JSON object of strings", path) // no value in the message
	}
	env := make([]string, 0, len(vals))
	var errs []error
	for k, v := range vals {
		if msg := model.SecretEnvProblem(k); msg != "" {
			errs = append(errs, fmt.Errorf("secret environment %s: %s", path, msg))
			continue
		}
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, errors.Join(errs...)
}

// waitForFile returns once path exists (polled every 2 ms: it is written
// on the host into a directory shared read-only with the guest).
func waitForFile(ctx context.Context, path string) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// killGrace is how long the test command's group has between SIGTERM and
// SIGKILL.
const killGrace = 3 * time.Second

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (r *Runner) bootstrapFailed(err error) int {
	msg := "Incus guest bootstrap failed: " + err.Error()
	fmt.Fprintln(r.Stderr, msg)
	res := model.TerminalResult{SchemaVersion: 1, Status: model.TerminalFailed, FinishedAt: model.At(r.Now()), Message: msg}
	if werr := r.writeJSON("result.json", res); werr != nil {
		fmt.Fprintf(r.Stderr, "write result: %v\n", werr)
	}
	r.state(model.GuestFailed, msg)
	return 2
}

// state writes status.json and appends the same change to events.jsonl.
func (r *Runner) state(s model.GuestState, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := model.At(r.Now().Truncate(time.Second))
	if err := r.writeJSON("status.json", model.GuestStatus{SchemaVersion: 1, State: s, UpdatedAt: now, Message: msg}); err != nil {
		fmt.Fprintf(r.Stderr, "write status: %v\n", err)
	}
	r.seq++
	line, _ := model.EncodeCompact(model.GuestEvent{SchemaVersion: 1, Seq: r.seq, Timestamp: now, Kind: s, Message: msg})
	f, err := os.OpenFile(filepath.Join(r.Dir, "events.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		_, err = f.Write(line)
		err = errors.Join(err, f.Sync(), f.Close())
	}
	if err != nil {
		fmt.Fprintf(r.Stderr, "write event: %v\n", err)
	}
}

func (r *Runner) writeJSON(name string, v any) error {
	b, err := model.EncodeFile(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(r.Dir, name), b, 0o644)
}

func (r *Runner) stamp() string { return r.Now().Format(time.RFC3339) }

func ptr[T any](v T) *T { return &v }
