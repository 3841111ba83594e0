package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/internal/backoff"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// flakyPublisher fails a lane's first fails[lane] publications (-1: all)
// and records every publication, in order.
type flakyPublisher struct {
	fails map[string]int
	err   error
	calls []string
	seq   uint64
}

func (f *flakyPublisher) Enqueue(_ context.Context, spec model.JobSpec) (protocol.EnqueueResult, error) {
	f.calls = append(f.calls, spec.Name())
	if n := f.fails[spec.Name()]; n != 0 {
		if n > 0 {
			f.fails[spec.Name()] = n - 1
		}
		return protocol.EnqueueResult{}, f.err
	}
	f.seq++
	return protocol.EnqueueResult{Sequence: 41 + f.seq}, nil
}

// TestPublishPush: every lane is published before anything is printed; a
// failing publication is retried; a lane that still fails stops the push,
// and the command names the lanes queued (with their job ids) and the ones
// not, with exit 3 (some queued) or 2 (none).
func TestPublishPush(t *testing.T) {
	saved := pushRetry
	pushRetry = backoff.Backoff{First: time.Millisecond, Max: time.Millisecond}
	t.Cleanup(func() { pushRetry = saved })
	lanes := []string{"check-a", "check-b", "check-c"}
	specs := make([]model.JobSpec, len(lanes))
	for i, l := range lanes {
		specs[i] = model.JobSpec{SchemaVersion: 1, JobID: uuid.New(), Lane: l}
	}
	id := func(i int) string { return specs[i].JobID.String() }
	down := errors.New("publish job: nats: timeout")
	tests := []struct {
		name      string
		fails     map[string]int
		err       error
		code      int
		calls     []string
		stdout    []string // lines
		stderrHas []string
	}{
		{"all queued", nil, down, exitOK, lanes,
			[]string{"push #42 g: 3 lane(s)", id(0) + " check-a", id(1) + " check-b", id(2) + " check-c"}, nil},
		{"retried", map[string]int{"check-b": 2}, down, exitOK, []string{"check-a", "check-b", "check-b", "check-b", "check-c"},
			[]string{"push #42 g: 3 lane(s)", id(0) + " check-a", id(1) + " check-b", id(2) + " check-c"}, nil},
		{"stops midway", map[string]int{"check-b": -1}, down, exitPartialPush,
			[]string{"check-a", "check-b", "check-b", "check-b", "check-b", "check-b"},
			[]string{"push #42 g: 3 lane(s)", id(0) + " check-a"},
			[]string{"lane check-b (2 of 3), job " + id(1) + ": publish job: nats: timeout (tried 5 time(s))",
				"queued 1 of 3 lane(s): " + id(0) + " check-a\n", "not queued (2): check-b, check-c\n"}},
		{"none queued", map[string]int{"check-a": -1}, down, exitUsage, slices.Repeat([]string{"check-a"}, pushTries),
			nil, []string{"queued 0 of 3 lane(s): none\n", "not queued (3): check-a, check-b, check-c\n", "nothing was queued"}},
		{"invalid spec not retried", map[string]int{"check-c": -1}, fmt.Errorf("x: %w", model.ErrInvalidSpec), exitPartialPush,
			lanes, []string{"push #42 g: 3 lane(s)", id(0) + " check-a", id(1) + " check-b"},
			[]string{"(tried 1 time(s))", "not queued (1): check-c\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fails := map[string]int{}
			for k, v := range tc.fails {
				fails[k] = v
			}
			pub := &flakyPublisher{fails: fails, err: tc.err}
			var out, errb bytes.Buffer
			c := &cli{stdout: &out, stderr: &errb}
			code := c.publishPush(t.Context(), t.Context(), pub, "g", specs)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errb.String())
			}
			if !slices.Equal(pub.calls, tc.calls) {
				t.Errorf("publications %v, want %v", pub.calls, tc.calls)
			}
			var got []string
			if s := strings.TrimSpace(out.String()); s != "" {
				got = strings.Split(s, "\n")
			}
			if !slices.Equal(got, tc.stdout) {
				t.Errorf("stdout %q, want %q", got, tc.stdout)
			}
			for _, w := range tc.stderrHas {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			if tc.stderrHas == nil && errb.Len() > 0 {
				t.Errorf("stderr %q, want none", errb.String())
			}
		})
	}
}

// TestEnqueuePushStdoutGone: `jerichoci enqueue` of a push whose stdout is
// a pipe nobody reads any more (its reader closed before the first line,
// as `| head -0` would) dies of SIGPIPE on its first write, after every
// lane is in the work stream. Before, it published lane by lane and
// printed as it went, so the first write killed it with one lane queued.
func TestEnqueuePushStdoutGone(t *testing.T) {
	testenv.Needs(t, "a jerichoci build")
	bin := filepath.Join(t.TempDir(), "jerichoci")
	if out, err := itest.GoBuild("../..", bin, "./cmd/jerichoci"); err != nil {
		testenv.Missing(t, "build jerichoci: %v\n%s", err, out)
	}
	env, q, _ := embeddedQueue(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lanes := []string{"demo-pass", "demo-fail", "demo-timeout"}
	cmd := exec.Command(bin, slices.Concat([]string{"enqueue"}, lanes,
		[]string{"--group", "push-stdout-gone", "--source", src, "--host-path", "--catalog", "../../jerichoci.lanes.json"})...)
	cmd.Env = itest.CleanEnv()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close() // every write to w fails: EPIPE, and SIGPIPE on fd 1
	var errb itest.SyncBuffer
	cmd.Stdout, cmd.Stderr = w, &errb
	runErr := cmd.Run()
	_ = w.Close()
	var ee *exec.ExitError
	if !errors.As(runErr, &ee) {
		t.Fatalf("enqueue: %v (want it killed by SIGPIPE); stderr:\n%s", runErr, errb.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGPIPE {
		t.Fatalf("enqueue ended %v, want killed by SIGPIPE (its first write); stderr:\n%s", runErr, errb.String())
	}
	var got []string
	var ids []string
	for range lanes {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		next, err := q.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %v: %v (want every lane of %v queued)", got, err, lanes)
		}
		m := next.(jetstream.Msg)
		spec, err := model.ParseJobSpec(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, spec.Name())
		ids = append(ids, spec.JobID.String())
		if spec.Group == nil || !slices.Equal(spec.Group.Lanes, lanes) || len(spec.Group.JobIDs) != len(lanes) {
			t.Fatalf("job %s: group %+v, want lanes %v with a job id each", spec.Name(), spec.Group, lanes)
		}
		_ = m.Ack()
		if len(got) == len(lanes) && !slices.Equal(spec.Group.JobIDs, ids) {
			t.Errorf("group job_ids %v, want the jobs' ids in lane order %v", spec.Group.JobIDs, ids)
		}
	}
	if !slices.Equal(got, lanes) {
		t.Errorf("queued %v, want %v", got, lanes)
	}
}
