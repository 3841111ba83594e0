// Package guest is the runner that executes a job inside the guest, as the
// original's runner in its NixOS image does (docs/CONTRACTS.md, "The guest
// request and the runner" and "Guest runner environment"): it reads the
// schema-2 request, sets up the job's directories and environment, runs the
// command under a timeout as uid 1000 in group users (or as root), tees its
// output to logs/guest.log, and writes status.json, events.jsonl and the
// authoritative result.json as the original's lifecycle helper does.
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
	"syscall"
	"time"

	"jerichoci/model"
)

// Runner runs one guest request. Zero values are the real guest's settings.
type Runner struct {
	// Root is where the guest's paths are ("" is "/"); tests use a
	// temporary folder. The job's environment names the guest's paths.
	Root     string
	UID, GID uint32          // the job user; 1000 and 100 (users) when both are 0
	Environ  func() []string // the environment the runner was started with; os.Environ
	Stdout   io.Writer
	Stderr   io.Writer
	Now      func() time.Time
	// WaitForRequest: start before the request exists and wait for it (a
	// warm pool starts the runner ahead of the job, which then only writes
	// the request on the host).
	WaitForRequest bool

	chown      func(path string, uid, gid int) error // os.Chown
	bootIDPath string                                // /proc/sys/kernel/random/boot_id
	lc         lifecycle
}

// Main runs the request at path and returns the process exit code: the
// command's, 124 on timeout, 2 when the bootstrap failed.
func (r *Runner) Main(ctx context.Context, requestPath string) int {
	r.defaults()
	dir := r.path(model.GuestStateDir)
	for _, d := range []string{dir, filepath.Join(dir, "logs"), filepath.Join(dir, "artifacts")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			fmt.Fprintf(r.Stderr, "[pikaci] Incus guest bootstrap failed: %v\n", err)
			return 2
		}
	}
	logf, err := os.OpenFile(filepath.Join(dir, "logs", "guest.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(r.Stderr, "[pikaci] Incus guest bootstrap failed: open guest log: %v\n", err)
		return 2
	}
	defer logf.Close()
	booted := "[pikaci] incus guest booted at " + stamp(r.Now())
	fmt.Fprintln(r.Stdout, booted)
	fmt.Fprintln(logf, booted)
	r.record(model.GuestBooted, "incus guest booted", nil)
	if r.WaitForRequest {
		if err := waitForFile(ctx, requestPath); err != nil {
			return r.bootstrapFailed(logf, fmt.Errorf("wait for the request %s: %w", requestPath, err))
		}
	}

	req, err := ReadRequest(requestPath)
	if err != nil {
		return r.bootstrapFailed(logf, err)
	}
	secretEnv, err := readSecretEnv(req.SecretEnvFile)
	if err != nil {
		return r.bootstrapFailed(logf, err)
	}
	if err := r.prepareDirs(logf); err != nil {
		return r.bootstrapFailed(logf, err)
	}
	home := model.GuestUserHome
	if req.RunAsRoot {
		home = model.GuestRootHome
	}
	env := r.childEnv(home, secretEnv)
	r.record(model.GuestStarting, "launching guest command", []field{{"command", req.Command}, {"run_as_root", req.RunAsRoot}})
	code, err := r.run(ctx, req, env, logf)
	if err != nil {
		return r.bootstrapFailed(logf, err)
	}
	msg, st := "test passed", model.GuestCompleted
	if code != 0 {
		msg, st = fmt.Sprintf("test command exited with %d", code), model.GuestFailed
	}
	r.record(st, msg, []field{{"exit_code", code}})
	if err := r.lc.result(code, msg); err != nil {
		fmt.Fprintf(r.Stderr, "[pikaci] write result: %v\n", err)
		return 2
	}
	return code
}

func (r *Runner) defaults() {
	if r.UID == 0 && r.GID == 0 {
		r.UID, r.GID = model.GuestUID, model.GuestGID
	}
	if r.Environ == nil {
		r.Environ = os.Environ
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
	if r.chown == nil {
		r.chown = os.Chown
	}
	if r.bootIDPath == "" {
		r.bootIDPath = "/proc/sys/kernel/random/boot_id"
	}
	r.lc = lifecycle{dir: r.path(model.GuestStateDir), now: r.Now, bootIDPath: r.bootIDPath}
}

// path is the guest path p below Root.
func (r *Runner) path(p string) string { return filepath.Join("/", r.Root, p) }

// ReadRequest reads a schema-2 request. The four fields are checked in the
// original's order with its words, the first problem only; a field it does
// not know is refused (jerichoci's own secret_env_file aside).
func ReadRequest(path string) (model.GuestRequest, error) {
	var req model.GuestRequest
	b, err := os.ReadFile(path)
	if err != nil {
		return req, fmt.Errorf("read guest request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var raw struct {
		SchemaVersion json.RawMessage `json:"schema_version"`
		Command       json.RawMessage `json:"command"`
		TimeoutSecs   json.RawMessage `json:"timeout_secs"`
		RunAsRoot     json.RawMessage `json:"run_as_root"`
		SecretEnvFile *string         `json:"secret_env_file"`
	}
	if err := dec.Decode(&raw); err != nil {
		return req, fmt.Errorf("parse guest request %s: %w", path, err)
	}
	var version float64
	if json.Unmarshal(raw.SchemaVersion, &version) != nil || version != 2 {
		return req, fmt.Errorf("unsupported Incus guest request schema_version=%s", pyRepr(raw.SchemaVersion))
	}
	if json.Unmarshal(raw.Command, &req.Command) != nil || req.Command == "" {
		//lint:ignore ST1005 the original's words (docs/CONTRACTS.md)
		return req, errors.New("Incus guest request is missing non-empty string field `command`")
	}
	if req.TimeoutSecs, err = strconv.ParseUint(string(raw.TimeoutSecs), 10, 64); err != nil || req.TimeoutSecs == 0 {
		//lint:ignore ST1005 the original's words (docs/CONTRACTS.md)
		return req, errors.New("Incus guest request is missing positive integer field `timeout_secs`")
	}
	if json.Unmarshal(raw.RunAsRoot, &req.RunAsRoot) != nil || bytes.Equal(raw.RunAsRoot, []byte("null")) {
		//lint:ignore ST1005 the original's words (docs/CONTRACTS.md)
		return req, errors.New("Incus guest request is missing boolean field `run_as_root`")
	}
	if raw.SecretEnvFile != nil && !strings.HasPrefix(*raw.SecretEnvFile, "/") {
		return req, fmt.Errorf("guest request field `secret_env_file` must be an absolute path, got %q", *raw.SecretEnvFile)
	}
	req.SchemaVersion = 2
	if raw.SecretEnvFile != nil {
		req.SecretEnvFile = *raw.SecretEnvFile
	}
	return req, nil
}

// pyRepr shows a JSON value as the original's message does (Python's
// repr of the decoded value): None for a missing value or null, True and
// False, 'text' for a string, the JSON text otherwise.
func pyRepr(v json.RawMessage) string {
	var s string
	switch t := string(bytes.TrimSpace(v)); {
	case t == "" || t == "null":
		return "None"
	case t == "true":
		return "True"
	case t == "false":
		return "False"
	case json.Unmarshal(v, &s) == nil:
		return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
	default:
		return t
	}
}

// run executes `bash --noprofile --norc -lc <command>` under the timeout
// in the workspace, as the job user or root, with env; bash is found on
// env's PATH. stdout and stderr go together, in order, to the runner's
// stdout and the guest log.
func (r *Runner) run(ctx context.Context, req model.GuestRequest, env []string, logf io.Writer) (code int, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(req.TimeoutSecs)*time.Second)
	defer cancel()
	workdir := r.path(model.GuestWorkspaceDir)
	if _, err := os.Stat(workdir); err != nil {
		workdir = "/"
	}
	bash, err := lookPath(env, "bash", workdir)
	if err != nil {
		return 0, fmt.Errorf("start test command: %w", err)
	}
	cmd := exec.Command(bash, "--noprofile", "--norc", "-lc", req.Command)
	cmd.Args[0] = "bash"
	cmd.Dir = workdir
	cmd.Env = env
	log := &logCopy{w: logf}
	defer func() {
		if log.err != nil {
			fmt.Fprintf(r.Stderr, "[pikaci] guest log: %v; the command's output went on to the runner's stdout\n", log.err)
		}
	}()
	out := io.MultiWriter(r.Stdout, log)
	cmd.Stdout, cmd.Stderr = out, out // one pipe: the order of the two is kept
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !req.RunAsRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.UID, Gid: r.GID, Groups: []uint32{r.GID}}
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start test command: %w", err)
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
		return 124, nil
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// The original's root command is its direct child, whose death
			// by a signal it reports as the negative signal number; runuser
			// turns that into 128 + the number for the job user's.
			if req.RunAsRoot {
				return -int(ws.Signal()), nil
			}
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, fmt.Errorf("wait for test command: %w", err)
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

// bootstrapFailed reports err on stderr and in the guest log, records
// the failure and writes a failed result with exit code 2.
func (r *Runner) bootstrapFailed(logf io.Writer, err error) int {
	msg := "Incus guest bootstrap failed: " + err.Error()
	fmt.Fprintln(r.Stderr, "[pikaci] "+msg)
	fmt.Fprintln(logf, "[pikaci] "+msg)
	r.record(model.GuestFailed, msg, nil)
	if werr := r.lc.result(2, msg); werr != nil {
		fmt.Fprintf(r.Stderr, "[pikaci] write result: %v\n", werr)
	}
	return 2
}

// record writes status.json and appends the same change to events.jsonl.
// A failure to write is reported on stderr; the job goes on.
func (r *Runner) record(s model.GuestState, msg string, details []field) {
	if err := r.lc.status(s, msg, details); err != nil {
		fmt.Fprintf(r.Stderr, "[pikaci] write status: %v\n", err)
	}
	if err := r.lc.event(s, msg, details); err != nil {
		fmt.Fprintf(r.Stderr, "[pikaci] write event: %v\n", err)
	}
}

// logCopy is the guest log beside the runner's stdout, which the executor
// reads live: a write the log refuses (a full disk) is kept as err and the
// output goes on to stdout, instead of ending the copy mid-line. One pipe
// feeds it, so one goroutine writes.
type logCopy struct {
	w   io.Writer
	err error
}

func (l *logCopy) Write(p []byte) (int, error) {
	if l.err == nil {
		if _, err := l.w.Write(p); err != nil {
			l.err = err
		}
	}
	return len(p), nil
}
