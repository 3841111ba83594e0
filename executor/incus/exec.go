package incus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// ExecRequest is a command to run in an instance.
type ExecRequest struct {
	Command []string
	Env     map[string]string
	Cwd     string // "" is the server's default (the user's home or /)
	User    uint32 // uid; 0 is root
	Group   uint32 // gid
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

// execResult is the metadata of a finished recorded exec.
type execResult struct {
	Return *int              `json:"return"`
	Output map[string]string `json:"output"`
}

// Exec runs a command in a running instance and returns its exit code. A
// non-zero exit code is a result, not an error; a command that cannot be
// started at all gives 127 (not found) or 126, as a shell would.
//
// The server records stdout and stderr to log files. While the command runs,
// Exec reads the new bytes of both files every poll interval (ranged GETs)
// and writes them to stdout and stderr, so output is followed live; a last
// read after the end collects the rest, and the log files are deleted.
// stdout and stderr are written from one goroutine at a time; either may be
// nil to discard.
//
// A recorded exec cannot be cancelled: when ctx ends, Exec returns its error
// and the command goes on in the instance until it ends or the instance is
// stopped.
func (c *Client) Exec(ctx context.Context, name string, req ExecRequest, stdout, stderr io.Writer) (int, error) {
	fail := func(err error) (int, error) { return -1, fmt.Errorf("incus: exec in instance %q: %w", name, err) }
	if len(req.Command) == 0 {
		return fail(errors.New("empty command"))
	}
	op, err := c.async(ctx, request{method: http.MethodPost, path: "/instances/" + url.PathEscape(name) + "/exec", json: execPost{
		Command: req.Command, Environment: req.Env, RecordOutput: true,
		Cwd: req.Cwd, User: req.User, Group: req.Group,
	}})
	if err != nil {
		return fail(err)
	}
	log := c.log.With(zap.String("instance", name), zap.String("operation", op.ID))

	// The log files are named after the operation and can be read while
	// the command runs.
	logs := "/instances/" + url.PathEscape(name) + "/logs/exec-output/exec_" + url.PathEscape(op.ID)
	streams := []*tail{
		{path: logs + ".stdout", w: stdout},
		{path: logs + ".stderr", w: stderr},
	}

	wctx, cancelWait := context.WithCancel(ctx)
	type waited struct {
		op  *Operation
		err error
	}
	done := make(chan waited, 1)
	go func() {
		o, err := c.WaitOperation(wctx, op.ID)
		done <- waited{o, err}
	}()
	stopWait := func() { cancelWait(); <-done }

	ticker := time.NewTicker(c.pollInterval)
	defer ticker.Stop()
	var final waited
poll:
	for {
		select {
		case final = <-done:
			cancelWait()
			break poll
		case <-ticker.C:
			for _, s := range streams {
				if err := c.readNew(ctx, s); err != nil {
					stopWait()
					return fail(err)
				}
			}
		}
	}
	if final.op == nil {
		return fail(final.err)
	}
	var res execResult
	if len(final.op.Metadata) > 0 {
		if err := json.Unmarshal(final.op.Metadata, &res); err != nil {
			return fail(fmt.Errorf("decode exec result: %w", err))
		}
	}
	if res.Return == nil {
		if final.err != nil {
			return fail(final.err)
		}
		return fail(fmt.Errorf("operation %s: no exit code in the result", op.ID))
	}
	if final.err != nil {
		// Could not run the command; the operation still has a code.
		log.Debug("exec failed to start", zap.Int("return", *res.Return), zap.String("err", final.op.Err))
	}

	// The result names the log files; they should be the ones we read.
	for i, key := range []string{"1", "2"} {
		if p, ok := res.Output[key]; ok && p != "" {
			p = strings.TrimPrefix(p, "/1.0")
			if p != streams[i].path {
				streams[i] = &tail{path: p, w: streams[i].w}
			}
		}
	}
	for _, s := range streams {
		if err := c.readAll(ctx, s); err != nil {
			return fail(err)
		}
	}
	for _, s := range streams {
		if s.seen {
			c.deleteLog(ctx, s.path, log)
		}
	}
	return *res.Return, nil
}

// tail follows one log file.
type tail struct {
	path   string
	w      io.Writer
	offset int64
	seen   bool // the file exists
}

// readAll reads what is left of a log file after the command ended.
func (c *Client) readAll(ctx context.Context, s *tail) error {
	for {
		before := s.offset
		if err := c.readNew(ctx, s); err != nil {
			return err
		}
		if s.offset == before {
			return nil
		}
	}
}

// readNew copies the bytes of the log file from s.offset on to s.w.
func (c *Client) readNew(ctx context.Context, s *tail) error {
	h := http.Header{}
	if s.offset > 0 {
		h.Set("Range", "bytes="+strconv.FormatInt(s.offset, 10)+"-")
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, path: s.path, header: h})
	if err != nil {
		return fmt.Errorf("read output: %w", err)
	}
	defer resp.Body.Close()
	w := s.w
	if w == nil {
		w = io.Discard
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		s.seen = true
	case http.StatusOK:
		s.seen = true
		// The whole file (no range asked, or the range ignored, as for an
		// empty file): skip what was written already.
		if s.offset > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, s.offset); errors.Is(err, io.EOF) {
				return nil // not longer than before: nothing new
			} else if err != nil {
				return fmt.Errorf("read output %s: %w", s.path, err)
			}
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// Nothing new.
		s.seen = true
		return nil
	case http.StatusNotFound:
		// Not created yet (or nothing recorded).
		return nil
	default:
		_, err := decodeEnvelope(http.MethodGet, s.path, resp)
		if err == nil {
			err = fmt.Errorf("GET /1.0%s: unexpected HTTP %d", s.path, resp.StatusCode)
		}
		return fmt.Errorf("read output: %w", err)
	}
	n, err := io.Copy(w, resp.Body)
	s.offset += n
	if err != nil {
		return fmt.Errorf("read output %s: %w", s.path, err)
	}
	return nil
}

// deleteLog removes a recorded log file; failures are only logged (the
// files go away with the instance anyway).
func (c *Client) deleteLog(ctx context.Context, path string, log *zap.Logger) {
	if err := c.doSync(ctx, request{method: http.MethodDelete, path: path}); err != nil {
		log.Debug("delete exec output", zap.String("path", path), zap.Error(err))
	}
}
