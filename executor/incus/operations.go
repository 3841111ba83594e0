package incus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Operation is a background task of the server (create, state change,
// exec, image upload …).
type Operation struct {
	ID          string          `json:"id"`
	Class       string          `json:"class"`
	Description string          `json:"description"`
	Status      string          `json:"status"`
	StatusCode  int             `json:"status_code"`
	Metadata    json.RawMessage `json:"metadata"`
	MayCancel   bool            `json:"may_cancel"`
	Err         string          `json:"err"`
}

// Operation status codes (shared/api/status_code.go upstream).
const (
	opSuccess = 200
	opFinal   = 200 // codes from here on are final: 200 success, 400 failure, 401 cancelled
)

// maxWait is the longest single long-poll on an operation.
const maxWait = 30 * time.Second

// waitQuery is the query of one long poll on an operation's /wait: at
// most maxWait, no longer than ctx has left, and at least a second.
func waitQuery(ctx context.Context) url.Values {
	secs := int(maxWait / time.Second)
	if dl, ok := ctx.Deadline(); ok {
		secs = min(secs, int(math.Ceil(time.Until(dl).Seconds())))
	}
	return url.Values{"timeout": {strconv.Itoa(max(secs, 1))}}
}

// async sends a request that must answer with an operation and returns it.
func (c *Client) async(ctx context.Context, r request) (*Operation, error) {
	env, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if env.Type != "async" {
		return nil, fmt.Errorf("%s %s: want an async response, got %q", r.method, r.path, env.Type)
	}
	var op Operation
	if len(env.Metadata) > 0 && string(env.Metadata) != "null" {
		if err := json.Unmarshal(env.Metadata, &op); err != nil {
			return nil, fmt.Errorf("%s %s: decode operation: %w", r.method, r.path, err)
		}
	}
	if op.ID == "" {
		op.ID = strings.TrimPrefix(env.Operation, "/1.0/operations/")
	}
	if op.ID == "" || strings.Contains(op.ID, "/") {
		return nil, fmt.Errorf("%s %s: async response without an operation id (%q)", r.method, r.path, env.Operation)
	}
	return &op, nil
}

// run sends a request that starts an operation and waits for its end.
func (c *Client) run(ctx context.Context, r request) (*Operation, error) {
	op, err := c.async(ctx, r)
	if err != nil {
		return nil, err
	}
	return c.WaitOperation(ctx, op.ID)
}

// WaitOperation waits until the operation is over and returns its final
// state. An operation that failed or was cancelled returns that state too,
// with an *OperationError.
//
// It long-polls /wait for at most 30s at a time. The wait endpoint answers
// HTTP 200 with an error envelope both when the operation failed and when
// the poll timed out, and that envelope carries no operation data; so after
// any error envelope the operation itself is fetched: final means done,
// running means poll again.
//
// When ctx ends first, it asks the server to cancel the operation (best
// effort, on a detached context) and returns the context's error.
func (c *Client) WaitOperation(ctx context.Context, id string) (*Operation, error) {
	return c.waitOperation(ctx, id, false)
}

// waitCommand waits for an exec operation as WaitOperation does. A
// command lasts as long as it lasts (a job, a warm instance's runner
// waiting for its request), so its polls ending at their limit are normal:
// they are neither warned about nor counted.
func (c *Client) waitCommand(ctx context.Context, id string) (*Operation, error) {
	return c.waitOperation(ctx, id, true)
}

func (c *Client) waitOperation(ctx context.Context, id string, command bool) (*Operation, error) {
	path := "/operations/" + url.PathEscape(id)
	for {
		var op Operation
		err := c.get(ctx, path+"/wait", waitQuery(ctx), &op)
		if ctx.Err() != nil {
			c.cancelOperation(ctx, id)
			return nil, fmt.Errorf("wait for operation %s: %w", id, ctx.Err())
		}
		if err == nil {
			if op.StatusCode >= opFinal {
				return finished(&op)
			}
			c.waitLimitReached(id, op.Description, command)
			continue
		}
		var se *StatusError
		if !errors.As(err, &se) {
			return nil, fmt.Errorf("wait for operation %s: %w", id, err)
		}
		// The wait trap: fetch the operation itself.
		var cur Operation
		if gerr := c.get(ctx, path, nil, &cur); gerr != nil {
			if ctx.Err() != nil {
				c.cancelOperation(ctx, id)
				return nil, fmt.Errorf("wait for operation %s: %w", id, ctx.Err())
			}
			return nil, fmt.Errorf("wait for operation %s: %w", id, err)
		}
		if cur.StatusCode >= opFinal {
			return finished(&cur)
		}
		// Still running: that wait timed out. Pause a little so that a
		// server answering every wait with an error is not hammered.
		c.waitLimitReached(id, cur.Description, command)
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			c.cancelOperation(ctx, id)
			return nil, fmt.Errorf("wait for operation %s: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

// waitLimitReached notes a long poll that ended at its limit with the
// operation still running: one of ours took that long, which is worth an
// operator's eye (WaitLimits, on /metrics), unless it runs a command.
func (c *Client) waitLimitReached(id, description string, command bool) {
	if command {
		c.log.Debug("command still running after a whole long poll", zap.String("operation", id),
			zap.String("description", description))
		return
	}
	c.waitLimits.Add(1)
	c.log.Warn("operation still running after a whole long poll", zap.String("operation", id),
		zap.String("description", description))
}

// WaitLimits counts the long polls on operations that ended at their limit
// with the operation still running, since the client was made.
func (c *Client) WaitLimits() uint64 { return c.waitLimits.Load() }

func finished(op *Operation) (*Operation, error) {
	if op.StatusCode == opSuccess {
		return op, nil
	}
	return op, &OperationError{Op: op}
}

// cancelOperation asks the server to cancel an operation; many cannot be
// cancelled (recorded exec, for one), so errors are only logged.
func (c *Client) cancelOperation(ctx context.Context, id string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := c.doSync(dctx, request{method: http.MethodDelete, path: "/operations/" + url.PathEscape(id)})
	if err != nil {
		c.log.Debug("cancel operation", zap.String("operation", id), zap.Error(err))
	}
}
