package incus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"jerichoci/internal/backoff"
)

// Instance types.
const (
	TypeContainer      = "container"
	TypeVirtualMachine = "virtual-machine"
)

// InstanceSource says what a new instance is made from.
type InstanceSource struct {
	Type        string `json:"type"` // "image" or "none"
	Alias       string `json:"alias,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"` // a unique prefix will do
}

// InstancesPost is the body of a create request.
type InstancesPost struct {
	Name        string                       `json:"name"`
	Type        string                       `json:"type,omitempty"`
	Description string                       `json:"description,omitempty"`
	Source      InstanceSource               `json:"source"`
	Config      map[string]string            `json:"config,omitempty"`
	Devices     map[string]map[string]string `json:"devices,omitempty"`
	// Profiles: nil gives the project's "default" profile.
	Profiles  []string `json:"profiles,omitempty"`
	Ephemeral bool     `json:"ephemeral,omitempty"`
	// Start starts the instance as part of the creation (one round trip
	// less than a separate start).
	Start bool `json:"start,omitempty"`
}

// Instance is what GET /1.0/instances/<name> returns (the fields we use).
type Instance struct {
	Name            string                       `json:"name"`
	Type            string                       `json:"type"`
	Description     string                       `json:"description"`
	Project         string                       `json:"project"`
	Status          string                       `json:"status"` // "Running", "Stopped" …
	StatusCode      int                          `json:"status_code"`
	Architecture    string                       `json:"architecture"`
	Ephemeral       bool                         `json:"ephemeral"`
	Profiles        []string                     `json:"profiles"`
	Config          map[string]string            `json:"config"`
	ExpandedConfig  map[string]string            `json:"expanded_config"`
	Devices         map[string]map[string]string `json:"devices"`
	ExpandedDevices map[string]map[string]string `json:"expanded_devices"`
	CreatedAt       time.Time                    `json:"created_at"`
}

// CreateInstance creates an instance (and starts it when req.Start is set)
// and waits until that is done. A name already taken gives an error for
// which IsConflict is true.
func (c *Client) CreateInstance(ctx context.Context, req InstancesPost) error {
	_, err := c.run(ctx, request{method: http.MethodPost, path: "/instances", json: req})
	if err == nil {
		return nil
	}
	// A duplicate name only shows as a failed operation with a database
	// message; report it as the conflict it is.
	var oe *OperationError
	if errors.As(err, &oe) && isDuplicateMessage(oe.Op.Err) {
		err = &StatusError{Method: http.MethodPost, Path: "/instances", Status: http.StatusConflict, Msg: oe.Op.Err}
	}
	return fmt.Errorf("incus: create instance %q: %w", req.Name, err)
}

func isDuplicateMessage(msg string) bool {
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "already exists")
}

// GetInstance returns an instance; IsNotFound(err) when there is none.
func (c *Client) GetInstance(ctx context.Context, name string) (*Instance, error) {
	var inst Instance
	if err := c.get(ctx, "/instances/"+url.PathEscape(name), nil, &inst); err != nil {
		return nil, fmt.Errorf("incus: get instance %q: %w", name, err)
	}
	return &inst, nil
}

// Filter selects instances whose Field equals Value exactly. Field is
// "name", "type", "status", "description", or "config.<key>" (looked up
// in the expanded config, so profile values count).
type Filter struct {
	Field string
	Value string
}

// safeFilterValue is what may go into a server-side filter unquoted: the
// server treats the value as an anchored, case-insensitive regular
// expression, and an empty value is a syntax error there.
var safeFilterValue = regexp.MustCompile(`^[A-Za-z0-9_.:/@+-]+$`)

// ListInstances returns the instances matching every filter. The filters
// go to the server to cut the answer down, but the server compares as a
// case-insensitive regular expression, so each value is checked again
// here, exactly.
func (c *Client) ListInstances(ctx context.Context, filters ...Filter) ([]Instance, error) {
	var server []string
	for _, f := range filters {
		if f.Field != "name" && f.Field != "type" && f.Field != "status" && f.Field != "description" &&
			!strings.HasPrefix(f.Field, "config.") {
			return nil, fmt.Errorf("incus: list instances: unsupported filter field %q", f.Field)
		}
		if safeFilterValue.MatchString(f.Value) {
			server = append(server, f.Field+" eq "+f.Value)
		}
	}
	q := url.Values{"recursion": {"1"}}
	if len(server) > 0 {
		q.Set("filter", strings.Join(server, " and "))
	}
	var all []Instance
	if err := c.get(ctx, "/instances", q, &all); err != nil {
		return nil, fmt.Errorf("incus: list instances: %w", err)
	}
	out := []Instance{}
	for _, inst := range all {
		if matchesAll(inst, filters) {
			out = append(out, inst)
		}
	}
	return out, nil
}

func matchesAll(inst Instance, filters []Filter) bool {
	for _, f := range filters {
		var got string
		var ok bool
		switch {
		case f.Field == "name":
			got, ok = inst.Name, true
		case f.Field == "type":
			got, ok = inst.Type, true
		case f.Field == "status":
			got, ok = inst.Status, true
		case f.Field == "description":
			got, ok = inst.Description, true
		default:
			key := strings.TrimPrefix(f.Field, "config.")
			got, ok = inst.ExpandedConfig[key]
			if !ok {
				got, ok = inst.Config[key]
			}
		}
		if !ok || got != f.Value {
			return false
		}
	}
	return true
}

// StatePut is the body of a state change.
type StatePut struct {
	Action   string `json:"action"` // start, stop, restart, freeze, unfreeze
	Timeout  int    `json:"timeout"`
	Force    bool   `json:"force,omitempty"`
	Stateful bool   `json:"stateful,omitempty"`
}

// SetState changes an instance's state and waits until that is done.
func (c *Client) SetState(ctx context.Context, name string, st StatePut) error {
	_, err := c.run(ctx, request{method: http.MethodPut, path: "/instances/" + url.PathEscape(name) + "/state", json: st})
	if err != nil {
		return fmt.Errorf("incus: %s instance %q: %w", st.Action, name, err)
	}
	return nil
}

// StartInstance starts an instance.
func (c *Client) StartInstance(ctx context.Context, name string) error {
	return c.SetState(ctx, name, StatePut{Action: "start", Timeout: 30})
}

// ForceStopInstance kills an instance at once. An instance that is stopped
// already is no error.
func (c *Client) ForceStopInstance(ctx context.Context, name string) error {
	err := c.SetState(ctx, name, StatePut{Action: "stop", Force: true, Timeout: -1})
	if err != nil && isAlreadyStopped(err) {
		return nil
	}
	return err
}

func isAlreadyStopped(err error) bool {
	var oe *OperationError
	if errors.As(err, &oe) {
		return strings.Contains(oe.Op.Err, "already stopped")
	}
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusBadRequest && strings.Contains(se.Msg, "already stopped")
}

// Pauses between two tries of a teardown step the server refused for now
// (the instance is busy with another operation, a start is under way).
const (
	deleteRetryFirst = 100 * time.Millisecond
	deleteRetryMax   = time.Second
)

// DeleteInstance removes an instance, force-stopping it first when it
// runs, and returns nil once the instance is gone. It is idempotent and
// holds against other parties working on the same instance at the same
// time (a second DeleteInstance, the reaper, a create or start still under
// way, a stop):
//
//   - a 404 at any step means gone. When it did not come from the
//     instance itself (an operation that vanished), a GET of the instance
//     confirms it;
//   - "A matching non-reusable operation has now succeeded" (another
//     party's delete won the race) and any other failed delete or stop
//     operation count as done when a GET of the instance then answers 404;
//   - before it reports gone, it looks for a task of the server still
//     working on that name: a create whose POST was accepted makes the
//     database record only later, so a DELETE sent at once answers 404.
//     It waits for such a task and deletes again;
//   - `Instance is busy running a "…" operation`, "Instance is running"
//     right after a stop (a start was under way) and "connection reset by
//     peer" (forkfile.sock) are tried again after a short, growing pause;
//   - anything else (403, 500, a server that cannot be reached, a failed
//     delete of an instance that is still there) is an error naming the
//     instance: `incus: delete instance "NAME": …`.
//
// The retries end with ctx: the error then holds the last answer and
// ctx's error.
func (c *Client) DeleteInstance(ctx context.Context, name string) error {
	pause := backoff.Backoff{First: deleteRetryFirst, Max: deleteRetryMax}
	justStopped := false
	// retrying is the answer the last pause was for. When ctx ends in the
	// middle of a request, that request's error only says so; this says
	// why we were still trying.
	var retrying error
	for {
		err := c.deleteOnce(ctx, name)
		if err == nil {
			return nil
		}
		kind := classifyTeardown(err, name)
		if kind == teardownRunning && !justStopped && ctx.Err() == nil {
			// Stop it, then delete again at once.
			if err = c.ForceStopInstance(ctx, name); err == nil {
				justStopped = true
				continue
			}
			kind = classifyTeardown(err, name)
		}
		justStopped = false
		if ctx.Err() != nil {
			return deleteGaveUp(ctx, name, retrying, err)
		}
		switch kind {
		case teardownGone, teardownMaybeGone, teardownFailedOp:
			state, cerr := c.confirmGone(ctx, name, kind != teardownGone)
			switch {
			case cerr != nil && ctx.Err() != nil:
				return deleteGaveUp(ctx, name, retrying, err)
			case cerr != nil:
				return fmt.Errorf("incus: delete instance %q: %w (then: %w)", name, err, cerr)
			case state == instanceGone:
				if kind != teardownGone {
					c.log.Debug("instance gone", zap.String("instance", name), zap.NamedError("answer", err))
				}
				return nil
			case state == instanceThere && kind == teardownFailedOp:
				// The instance is still there: the failure is real.
				return fmt.Errorf("incus: delete instance %q: %w", name, err)
			}
			// Still there after another party's delete, or a task on it
			// has just ended: again.
		case teardownRetry, teardownRunning:
		default:
			return fmt.Errorf("incus: delete instance %q: %w", name, err)
		}
		delay := pause.Next()
		c.log.Debug("delete instance again", zap.String("instance", name), zap.Duration("after", delay), zap.Error(err))
		retrying = err
		if backoff.Sleep(ctx, delay) != nil {
			return deleteGaveUp(ctx, name, retrying, err)
		}
	}
}

// deleteGaveUp is the error of a DeleteInstance whose ctx ended: the
// server's last answer, or the one it was retrying on when ctx's end cut
// the last request short, and ctx's error.
func deleteGaveUp(ctx context.Context, name string, retrying, last error) error {
	answer := last
	if isContextErr(last) && retrying != nil {
		answer = retrying
	}
	if errors.Is(answer, ctx.Err()) {
		return fmt.Errorf("incus: delete instance %q: %w", name, answer)
	}
	return fmt.Errorf("incus: delete instance %q: %w (gave up: %w)", name, answer, ctx.Err())
}

// isContextErr: err comes from a context's end, not from the server.
func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (c *Client) deleteOnce(ctx context.Context, name string) error {
	_, err := c.run(ctx, request{method: http.MethodDelete, path: "/instances/" + url.PathEscape(name)})
	return err
}

// teardownKind sorts the answers to a stop or delete of an instance.
type teardownKind int

const (
	teardownFail      teardownKind = iota // a real error
	teardownGone                          // 404 for the instance itself
	teardownMaybeGone                     // 404 of something else, or another party's delete won
	teardownFailedOp                      // the server's stop or delete task failed otherwise
	teardownRetry                         // busy or a transient fault: try again later
	teardownRunning                       // running: stop first
)

// matchingSucceeded is the failure of a delete that waited for another
// party's delete of the same instance, which succeeded.
const matchingSucceeded = "matching non-reusable operation has now succeeded"

func classifyTeardown(err error, name string) teardownKind {
	msg := err.Error()
	var se *StatusError
	var oe *OperationError
	switch {
	case IsNotFound(err):
		if errors.As(err, &se) && isInstancePath(se.Path, name) {
			return teardownGone
		}
		return teardownMaybeGone
	case strings.Contains(msg, matchingSucceeded):
		return teardownMaybeGone
	case isBusy(err), strings.Contains(msg, "connection reset by peer"):
		return teardownRetry
	case isRunning(err):
		return teardownRunning
	case errors.As(err, &oe):
		return teardownFailedOp
	default:
		return teardownFail
	}
}

// isInstancePath: path (below /1.0) is the instance's or one of its
// sub-resources (state).
func isInstancePath(path, name string) bool {
	p := "/instances/" + url.PathEscape(name)
	return path == p || strings.HasPrefix(path, p+"/")
}

// isBusy: an instance with an operation under way answers
// `Instance is busy running a "create" operation` (and likewise for the
// others), as a 400 or as the failure of the delete task.
func isBusy(err error) bool {
	return err != nil && strings.Contains(err.Error(), "is busy running a")
}

// isRunning: DELETE of a running instance answers 400 "Instance is
// running"; the delete task says the same when a start won the race.
func isRunning(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "instance is running")
}

// What confirmGone found.
const (
	instanceGone   = iota // no instance, no task working on that name
	instanceThere         // the GET found it
	instanceWaited        // no instance, but a task worked on that name: waited for it
)

// confirmGone tells whether the instance is gone for good: with get, a
// GET must answer 404 first; then no task of the server may still be
// working on that name. A task found is waited for. The error is that of
// a GET that failed otherwise.
func (c *Client) confirmGone(ctx context.Context, name string, get bool) (int, error) {
	if get {
		_, err := c.GetInstance(ctx, name)
		if err == nil {
			return instanceThere, nil
		}
		if !IsNotFound(err) {
			return 0, err
		}
	}
	ids := c.tasksOn(ctx, name)
	if len(ids) == 0 {
		return instanceGone, nil
	}
	for _, id := range ids {
		c.log.Debug("no instance, but a task works on its name", zap.String("instance", name), zap.String("operation", id))
		c.waitTask(ctx, id)
	}
	return instanceWaited, nil
}

// tasksOn returns the ids of the server's unfinished tasks that name the
// instance among their resources. It is best effort: when the list cannot
// be read, it returns none.
func (c *Client) tasksOn(ctx context.Context, name string) []string {
	var byStatus map[string][]struct {
		ID         string              `json:"id"`
		Class      string              `json:"class"`
		StatusCode int                 `json:"status_code"`
		Resources  map[string][]string `json:"resources"`
	}
	if err := c.get(ctx, "/operations", url.Values{"recursion": {"1"}}, &byStatus); err != nil {
		c.log.Debug("list operations", zap.Error(err))
		return nil
	}
	want := "/1.0/instances/" + name
	var ids []string
	for _, ops := range byStatus {
		for _, op := range ops {
			if op.Class != "task" || op.StatusCode >= opFinal || op.ID == "" {
				continue
			}
			for _, r := range op.Resources["instances"] {
				// "/1.0/instances/NAME?project=P"
				if u, err := url.Parse(r); err == nil && u.Path == want {
					ids = append(ids, op.ID)
					break
				}
			}
		}
	}
	return ids
}

// waitTask waits (one long poll at most) for another party's operation to
// end. Unlike WaitOperation it never cancels it, and the outcome does not
// matter.
func (c *Client) waitTask(ctx context.Context, id string) {
	if err := c.get(ctx, "/operations/"+url.PathEscape(id)+"/wait", waitQuery(ctx), nil); err != nil {
		c.log.Debug("wait for operation", zap.String("operation", id), zap.Error(err))
	}
}

// SetInstanceConfig sets config keys of an instance (PATCH: the other keys
// and the devices stay as they are).
func (c *Client) SetInstanceConfig(ctx context.Context, name string, config map[string]string) error {
	err := c.doSync(ctx, request{method: http.MethodPatch, path: "/instances/" + url.PathEscape(name),
		json: map[string]any{"config": config}})
	if err != nil {
		return fmt.Errorf("incus: set config of instance %q: %w", name, err)
	}
	return nil
}
