package incus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
)

// DefaultKillGrace is how long Exec waits after SIGTERM before it sends
// SIGKILL, when ExecRequest.KillGrace is 0.
const DefaultKillGrace = 5 * time.Second

// ExecRequest is a command to run in an instance.
type ExecRequest struct {
	Command []string
	Env     map[string]string
	Cwd     string // "" is the server's default (the user's home or /)
	User    uint32 // uid; 0 is root
	Group   uint32 // gid
	// KillGrace is the time between SIGTERM and SIGKILL when the context
	// ends while the command runs; 0 is DefaultKillGrace.
	KillGrace time.Duration
}

// execPost is the body of POST /1.0/instances/<name>/exec.
type execPost struct {
	Command      []string          `json:"command"`
	Environment  map[string]string `json:"environment,omitempty"`
	WaitForWS    bool              `json:"wait-for-websocket"`
	Interactive  bool              `json:"interactive"`
	RecordOutput bool              `json:"record-output"`
	Cwd          string            `json:"cwd,omitempty"`
	User         uint32            `json:"user"`
	Group        uint32            `json:"group"`
}

// Exec runs a command in a running instance and returns its exit code. A
// non-zero exit code is a result, not an error; a command that cannot be
// started at all gives 127 (not found) or 126, as a shell would.
//
// The command runs over the websocket API: stdin is closed at once, and
// what the command writes to stdout and stderr is written to the two
// writers as it arrives, in order for each stream. stdout and stderr are
// written from one goroutine at a time (the writes of the two streams are
// serialised), never after Exec returned; either may be nil to discard.
// All the output the command wrote is delivered before Exec returns. A
// writer's error ends the command as a cancellation does and is returned.
//
// When ctx ends while the command runs, Exec sends it SIGTERM, then SIGKILL
// after req.KillGrace, waits (bounded) for it to end, and returns an error
// wrapping ctx.Err(). The signals reach the command's own process, not the
// processes it started.
func (c *Client) Exec(ctx context.Context, name string, req ExecRequest, stdout, stderr io.Writer) (int, error) {
	fail := func(err error) (int, error) { return -1, fmt.Errorf("incus: exec in instance %q: %w", name, err) }
	if len(req.Command) == 0 {
		return fail(errors.New("empty command"))
	}
	grace := req.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	op, err := c.async(ctx, request{method: http.MethodPost, path: "/instances/" + url.PathEscape(name) + "/exec", json: execPost{
		Command: req.Command, Environment: req.Env, WaitForWS: true, Interactive: false, RecordOutput: false,
		Cwd: req.Cwd, User: req.User, Group: req.Group,
	}})
	if err != nil {
		return fail(err)
	}
	log := c.log.With(zap.String("instance", name), zap.String("operation", op.ID))
	secrets, err := execSecretsOf(op)
	if err != nil {
		return fail(err)
	}
	s, err := c.attachExec(ctx, op.ID, secrets, log)
	if err != nil {
		return fail(err)
	}
	defer s.close()

	out := newExecOutput(stdout, stderr)
	s.start(ctx, out)
	// The operation is waited for on a context of its own: cancelling the
	// wait cancels the operation, which kills the command at once, with no
	// SIGTERM first.
	w := c.waitExec(ctx, op.ID)
	var stopErr error
	select {
	case <-w.done:
	case <-ctx.Done():
		stopErr = s.stop(ctx, ctx.Err(), grace, w)
	case <-out.failed:
		stopErr = s.stop(ctx, out.error(), grace, w)
	}
	outErr := s.drain(w.ended())
	switch {
	case stopErr != nil:
		return fail(stopErr)
	case out.error() != nil:
		// Failed while the operation ended on its own.
		return fail(out.error())
	}
	code, err := exitCode(w.op, w.err, log)
	if err != nil {
		return fail(err)
	}
	if outErr != nil {
		return fail(outErr)
	}
	return code, nil
}

// exitCode reads the exit code from the final state of an exec operation.
// A command that could not start is a failed operation that still has a
// code (127, 126).
func exitCode(op *Operation, waitErr error, log *zap.Logger) (int, error) {
	if op == nil {
		return -1, waitErr
	}
	var res struct {
		Return *int `json:"return"`
	}
	if len(op.Metadata) > 0 {
		if err := json.Unmarshal(op.Metadata, &res); err != nil {
			return -1, fmt.Errorf("decode exec result: %w", err)
		}
	}
	if res.Return == nil {
		if waitErr != nil {
			return -1, waitErr
		}
		return -1, fmt.Errorf("operation %s: no exit code in the result", op.ID)
	}
	if waitErr != nil {
		log.Debug("exec failed to start", zap.Int("return", *res.Return), zap.String("err", op.Err))
	}
	return *res.Return, nil
}
