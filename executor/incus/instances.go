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

// DeleteInstance removes an instance, force-stopping it first when it runs.
// It is idempotent: an instance that does not exist is no error. An
// instance still busy with another operation (a create that a cancelled job
// left running) is tried again with a growing pause until ctx ends.
func (c *Client) DeleteInstance(ctx context.Context, name string) error {
	delay := 100 * time.Millisecond
	for {
		err := c.deleteStopped(ctx, name)
		if err == nil || IsNotFound(err) {
			return nil
		}
		if !isBusy(err) || ctx.Err() != nil {
			return fmt.Errorf("incus: delete instance %q: %w", name, err)
		}
		c.log.Debug("instance busy, delete again", zap.String("instance", name), zap.Duration("after", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("incus: delete instance %q: %w (gave up: %w)", name, err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (c *Client) deleteStopped(ctx context.Context, name string) error {
	err := c.deleteOnce(ctx, name)
	if err != nil && isRunning(err) {
		if err = c.ForceStopInstance(ctx, name); err == nil {
			err = c.deleteOnce(ctx, name)
		}
	}
	return err
}

// isBusy: an instance with an operation under way answers
// `Instance is busy running a "create" operation` (and likewise for others).
func isBusy(err error) bool {
	return err != nil && strings.Contains(err.Error(), "is busy running a")
}

func (c *Client) deleteOnce(ctx context.Context, name string) error {
	_, err := c.run(ctx, request{method: http.MethodDelete, path: "/instances/" + url.PathEscape(name)})
	return err
}

// isRunning: DELETE of a running instance answers 400 "Instance is running".
func isRunning(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusBadRequest && strings.Contains(strings.ToLower(se.Msg), "running") &&
		!isBusy(err)
}
