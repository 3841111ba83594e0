package run

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

// namedExecutor answers every job with its own name as the message.
type namedExecutor string

func (n namedExecutor) Execute(context.Context, executor.Job) (executor.Result, error) {
	return executor.Result{Status: model.StatusPassed, Message: string(n)}, nil
}

// preparingExecutor is an Incus executor with a runner check.
type preparingExecutor struct {
	namedExecutor
	err error
}

func (p preparingExecutor) PrepareRunner(context.Context, executor.Job) error { return p.err }

func TestJobRouterRoutesByRuntime(t *testing.T) {
	r := JobRouter{Incus: namedExecutor("incus"), Host: namedExecutor("host")}
	tests := []struct {
		kind model.RuntimeKind
		want string
	}{
		{model.RuntimeHostProcess, "host"},
		{model.RuntimeIncus, "incus"},
		{"", "incus"}, // a job without a runtime kind is an Incus job
	}
	for _, tc := range tests {
		res, err := r.Execute(t.Context(), executor.Job{Runtime: model.RuntimeConfig{Kind: tc.kind}})
		if err != nil || res.Message != tc.want {
			t.Errorf("runtime %q: went to %q (err %v), want %q", tc.kind, res.Message, err, tc.want)
		}
	}
}

func TestJobRouterPrepareRunner(t *testing.T) {
	broken := errors.New("no runner image")
	tests := []struct {
		name  string
		incus JobExecutor
		want  error
	}{
		{"incus executor without a check", namedExecutor("incus"), nil},
		{"incus executor's check passes", preparingExecutor{namedExecutor: "incus"}, nil},
		{"incus executor's check fails", preparingExecutor{namedExecutor: "incus", err: broken}, broken},
	}
	for _, tc := range tests {
		r := JobRouter{Incus: tc.incus, Host: namedExecutor("host")}
		if err := r.PrepareRunner(t.Context(), executor.Job{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: PrepareRunner = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestRefusals(t *testing.T) {
	var log bytes.Buffer
	res, err := RefuseHostJobs{}.Execute(t.Context(), executor.Job{HostLog: &log})
	if err != nil || res.Status != model.StatusFailed || res.Message != MsgHostJobsRefused {
		t.Errorf("RefuseHostJobs: %+v, %v; want failed with MsgHostJobsRefused, no error", res, err)
	}
	if log.String() != "[pikaci] "+MsgHostJobsRefused+"\n" {
		t.Errorf("host log = %q", log.String())
	}
	if _, err := (RefuseHostJobs{}).Execute(t.Context(), executor.Job{}); err != nil {
		t.Errorf("RefuseHostJobs without a host log: %v", err)
	}
	if _, err := (RefuseStagedBuilds{}).Realize(t.Context(), ".#x", &log); err == nil || err.Error() != MsgStagedBuildsRefused {
		t.Errorf("RefuseStagedBuilds: %v, want %q", err, MsgStagedBuildsRefused)
	}
}
