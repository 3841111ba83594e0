package incus

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Answers of the server when parties race to tear an instance down, as the
// real Incus 6.0.4 gives them. The wait endpoint answers a failed operation
// with an error envelope (the wait trap), after which the client fetches
// the operation.

// waitError is the /wait answer for an operation that failed with msg.
func waitError(msg string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "error", "status": "", "status_code": 0, "operation": "",
		"error_code": 500, "error": msg, "metadata": nil})
	return b
}

// failedOp is GET /1.0/operations/<id> of a task that failed with msg.
func failedOp(description, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "sync", "status": "Success", "status_code": 200,
		"metadata": map[string]any{"id": "5a0e0c52-3f3c-4a8e-9d4e-1b1e9a3d2f10", "class": "task",
			"description": description, "status": "Failure", "status_code": 400,
			"resources":  map[string]any{"instances": []string{"/1.0/instances/r1?project=p"}},
			"may_cancel": false, "err": msg, "location": "none"}})
	return b
}

// inTurn answers the bodies in turn (HTTP 200: the envelope carries the
// status); the last one repeats.
func inTurn(bodies ...[]byte) http.HandlerFunc {
	var mu sync.Mutex
	i := 0
	return func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		body := bodies[min(i, len(bodies)-1)]
		i++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}
}

const (
	otherOp        = "/1.0/operations/6d47a032-46ae-46da-a764-edddaeab4e8c"
	forceStop      = `{"action":"stop","timeout":-1,"force":true}`
	busyDelete     = `Instance is busy running a "delete" operation`
	busyStart      = `Failed to create instance delete operation: Instance is busy running a "start" operation`
	forkfileReset  = `Failed to stop device "eth0": read unix @->/proc/self/fd/37/forkfile.sock: read: connection reset by peer`
	matchedDeleted = "Failed to create instance delete operation: A matching non-reusable operation has now succeeded"
)

func TestDeleteInstanceRaces(t *testing.T) {
	fx := func(name string) []byte { return fixture(t, name) }
	var (
		del     = "DELETE /1.0/instances/r1"
		stop    = "PUT /1.0/instances/r1/state"
		wait    = "GET " + opPath + "/wait"
		getOp   = "GET " + opPath
		getInst = "GET /1.0/instances/r1"
		listOps = "GET /1.0/operations"
	)
	tests := []struct {
		name string
		// Answers in turn per endpoint; nil: not routed (the fake's 404).
		deletes, states, waits, opGets, gets, ops [][]byte
		wantErr                                   []string // substrings; none: nil
		wantCalls                                 []string // without queries
	}{
		{
			name:      "busy, busy, then 404",
			deletes:   [][]byte{fx("error_busy.json"), fx("error_busy.json"), fx("error_404.json")},
			ops:       [][]byte{fx("operations_none_on_r1.json")},
			wantCalls: []string{del, del, del, listOps},
		},
		{
			name:      "busy in the delete task, then deleted",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{waitError(busyStart), fx("operation_success.json")},
			opGets:    [][]byte{failedOp("Deleting instance", busyStart)},
			wantCalls: []string{del, wait, getOp, del, wait},
		},
		{
			name:      "another party's delete succeeded: GET 404 confirms",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{fx("wait_failure_matching_succeeded.json")},
			opGets:    [][]byte{fx("operation_delete_failure_matching_succeeded.json")},
			ops:       [][]byte{fx("operations_none_on_r1.json")},
			wantCalls: []string{del, wait, getOp, getInst, listOps},
		},
		{
			name:      "another party's delete succeeded but the instance is there: delete again",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{fx("wait_failure_matching_succeeded.json"), fx("operation_success.json")},
			opGets:    [][]byte{fx("operation_delete_failure_matching_succeeded.json")},
			gets:      [][]byte{fx("instance.json")},
			wantCalls: []string{del, wait, getOp, getInst, del, wait},
		},
		{
			name:      "running; the stop finds a delete under way; then 404",
			deletes:   [][]byte{fx("error_running.json"), fx("error_404.json")},
			states:    [][]byte{fx("async_create.json")},
			waits:     [][]byte{waitError(busyDelete)},
			opGets:    [][]byte{failedOp("Stopping instance", busyDelete)},
			wantCalls: []string{del, stop, wait, getOp, del, listOps},
		},
		{
			// DELETE checks "running" before it locks; a start under way
			// makes the stop a no-op ("already stopped") and the next
			// DELETE sees it running again.
			name: "still starting: running after the stop, stopped and deleted later",
			deletes: [][]byte{fx("error_running.json"), fx("error_running.json"), fx("error_running.json"),
				fx("async_create.json")},
			states: [][]byte{
				[]byte(`{"type":"error","error_code":400,"error":"The instance is already stopped"}`),
				fx("async_create.json"),
			},
			waits:     [][]byte{fx("operation_success.json")},
			wantCalls: []string{del, stop, del, del, stop, wait, del, wait},
		},
		{
			name:      "the delete task finds it running",
			deletes:   [][]byte{fx("async_create.json")},
			states:    [][]byte{fx("async_create.json")},
			waits:     [][]byte{waitError("Instance is running"), fx("operation_success.json")},
			opGets:    [][]byte{failedOp("Deleting instance", "Instance is running")},
			wantCalls: []string{del, wait, getOp, stop, wait, del, wait},
		},
		{
			name:      "forkfile.sock connection reset is tried again",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{waitError(forkfileReset), fx("operation_success.json")},
			opGets:    [][]byte{failedOp("Deleting instance", forkfileReset)},
			wantCalls: []string{del, wait, getOp, del, wait},
		},
		{
			name:      "404 at the stop",
			deletes:   [][]byte{fx("error_running.json")},
			states:    [][]byte{fx("error_404.json")},
			ops:       [][]byte{fx("operations_none_on_r1.json")},
			wantCalls: []string{del, stop, listOps},
		},
		{
			name:      "404 of the operation: GET 404 confirms",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{fx("error_404.json")},
			wantCalls: []string{del, wait, getOp, getInst, listOps},
		},
		{
			// A create whose POST was accepted makes its database record
			// later: DELETE answers 404 meanwhile.
			name:      "404 while a create task works on the name: wait for it, delete again",
			deletes:   [][]byte{fx("error_404.json"), fx("error_running.json"), fx("async_create.json")},
			states:    [][]byte{fx("async_create.json")},
			waits:     [][]byte{fx("operation_success.json")},
			ops:       [][]byte{fx("operations_create_running.json")},
			wantCalls: []string{del, listOps, "GET " + otherOp + "/wait", del, stop, wait, del, wait},
		},
		{
			name:      "403 is an error",
			deletes:   [][]byte{fx("error_403.json")},
			wantErr:   []string{`incus: delete instance "r1": DELETE /1.0/instances/r1: 403 forbidden: User does not have permission`},
			wantCalls: []string{del},
		},
		{
			name:      "500 is an error",
			deletes:   [][]byte{fx("error_500.json")},
			wantErr:   []string{`incus: delete instance "r1": `, "500 internal server error: Failed to open database"},
			wantCalls: []string{del},
		},
		{
			name:      "403 at the stop is an error",
			deletes:   [][]byte{fx("error_running.json")},
			states:    [][]byte{fx("error_403.json")},
			wantErr:   []string{`incus: delete instance "r1": `, "PUT /1.0/instances/r1/state: 403 forbidden"},
			wantCalls: []string{del, stop},
		},
		{
			name:      "a failed delete of an instance still there is an error",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{waitError("Instance is protected")},
			opGets:    [][]byte{failedOp("Deleting instance", "Instance is protected")},
			gets:      [][]byte{fx("instance.json")},
			wantErr:   []string{`incus: delete instance "r1": `, "Instance is protected"},
			wantCalls: []string{del, wait, getOp, getInst},
		},
		{
			name:      "a failed delete of an instance that is gone is done",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{waitError(`Failed deleting instance snapshots: Instance not found`)},
			opGets:    [][]byte{failedOp("Deleting instance", `Failed deleting instance snapshots: Instance not found`)},
			wantCalls: []string{del, wait, getOp, getInst, listOps},
		},
		{
			name:      "the confirming GET fails",
			deletes:   [][]byte{fx("async_create.json")},
			waits:     [][]byte{fx("wait_failure_matching_succeeded.json")},
			opGets:    [][]byte{fx("operation_delete_failure_matching_succeeded.json")},
			gets:      [][]byte{fx("error_500.json")},
			wantErr:   []string{`incus: delete instance "r1": `, "non-reusable operation", "GET /1.0/instances/r1: 500"},
			wantCalls: []string{del, wait, getOp, getInst},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			route := func(method, path string, bodies [][]byte) {
				if bodies != nil {
					f.handle(method, path, inTurn(bodies...))
				}
			}
			route("DELETE", "/1.0/instances/r1", tc.deletes)
			route("GET", opPath+"/wait", tc.waits)
			route("GET", opPath, tc.opGets)
			route("GET", "/1.0/instances/r1", tc.gets)
			route("GET", "/1.0/operations", tc.ops)
			route("GET", otherOp+"/wait", [][]byte{fx("operation_create_other_success.json")})
			var mu sync.Mutex
			var states []string
			if tc.states != nil {
				answer := inTurn(tc.states...)
				f.handle("PUT", "/1.0/instances/r1/state", func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					states = append(states, string(readAll(r)))
					mu.Unlock()
					answer(w, r)
				})
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			err := f.client().DeleteInstance(ctx, "r1")
			switch {
			case len(tc.wantErr) == 0 && err != nil:
				t.Fatalf("DeleteInstance() error = %v, want nil", err)
			case len(tc.wantErr) > 0 && err == nil:
				t.Fatalf("DeleteInstance() = nil, want an error with %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("DeleteInstance() error = %v, want it to hold %q", err, w)
				}
			}
			if ctx.Err() != nil {
				t.Errorf("DeleteInstance() took until the context's end")
			}
			var got []string
			for _, r := range f.requests() {
				got = append(got, strings.SplitN(r, "?", 2)[0])
			}
			if !slices.Equal(got, tc.wantCalls) {
				t.Errorf("requests =\n  %q\nwant\n  %q", got, tc.wantCalls)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range states {
				if s != forceStop {
					t.Errorf("state change = %s, want %s", s, forceStop)
				}
			}
		})
	}
}

// TestDeleteInstanceRetriesEndWithTheContext: an instance that stays busy
// (here: every stop finds a delete under way) is tried again after a
// short, growing pause, and the retries end when ctx ends, with the last
// answer and the context's error. The fake server ends ctx itself while it
// answers the third try's failed stop, so no wall-clock deadline races its
// answers: whether or not that answer still reaches the client, the
// client has seen a busy stop and is in its third try when ctx ends.
func TestDeleteInstanceRetriesEndWithTheContext(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f.handle("DELETE", "/1.0/instances/r1", inTurn(fixture(t, "error_running.json")))
	f.handle("PUT", "/1.0/instances/r1/state", inTurn(fixture(t, "async_create.json")))
	f.handle("GET", opPath+"/wait", inTurn(waitError(busyDelete)))
	opAnswer := inTurn(failedOp("Stopping instance", busyDelete))
	var mu sync.Mutex
	stops := 0
	f.handle("GET", opPath, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if stops++; stops == 3 {
			cancel()
		}
		mu.Unlock()
		opAnswer(w, r)
	})
	core, logs := observer.New(zap.DebugLevel)
	err := f.client(WithLogger(zap.New(core))).DeleteInstance(ctx, "r1")
	if err == nil || !strings.Contains(err.Error(), `incus: delete instance "r1"`) ||
		!strings.Contains(err.Error(), busyDelete) || !errors.Is(err, context.Canceled) {
		t.Fatalf("DeleteInstance() error = %v, want the busy answer and the context's end", err)
	}
	n := 0
	for _, r := range f.requests() {
		if strings.HasPrefix(r, "DELETE /1.0/instances/r1") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d DELETEs, want 3: no further try once ctx has ended", n)
	}
	var pauses []time.Duration
	for _, e := range logs.FilterMessage("delete instance again").All() {
		pauses = append(pauses, e.ContextMap()["after"].(time.Duration))
	}
	if want := []time.Duration{deleteRetryFirst, 2 * deleteRetryFirst}; !slices.Equal(pauses, want) {
		t.Errorf("pauses between tries = %v, want %v (short, growing)", pauses, want)
	}
}

// TestDeleteInstanceServerDown: no server is an error at once, naming the
// instance.
func TestDeleteInstanceServerDown(t *testing.T) {
	dir, err := os.MkdirTemp("", "jci-incus-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c, err := NewUnix(filepath.Join(dir, "no.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = c.DeleteInstance(ctx, "r1")
	if err == nil || !strings.HasPrefix(err.Error(), `incus: delete instance "r1": `) {
		t.Fatalf("DeleteInstance() error = %v, want an error naming the instance", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("DeleteInstance() retried until the deadline: %v", err)
	}
}
