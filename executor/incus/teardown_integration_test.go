package incus

// Teardown races against the real incusd (see incus_integration_test.go for
// the setup): deletes racing each other and racing a create or start.

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// teardownClient is a client of the real daemon that logs its requests and
// retries to the test's log (seen with -v or on failure).
func teardownClient(t *testing.T) *Client {
	t.Helper()
	realClient(t) // skips (or fails in CI) without a daemon
	sock, err := SocketPath(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewUnix(sock, WithProject(itProject), WithLogger(zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// teardownName returns a new instance name with this file's prefix and
// makes sure no instance of that name outlives the test.
func teardownName(t *testing.T, c *Client) string {
	t.Helper()
	return deletedAtEnd(t, c, "jci-teardown-")
}

func teardownPost(name string, start bool) InstancesPost {
	return InstancesPost{Name: name, Type: TypeContainer, Source: InstanceSource{Type: "image", Alias: itAlias},
		Profiles: []string{"default", itProfile}, Start: start}
}

// assertGone checks that nothing of that name is left.
func assertGone(t *testing.T, c *Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	if inst, err := c.GetInstance(ctx, name); !IsNotFound(err) {
		t.Errorf("GetInstance(%s) = %+v, %v; want not found", name, inst, err)
	}
	left, err := c.ListInstances(ctx, Filter{Field: "name", Value: name})
	if err != nil || len(left) != 0 {
		t.Errorf("ListInstances(name=%s) = %d instances, %v; want none", name, len(left), err)
	}
}

// TestIntegrationDeleteConcurrently: several parties delete the same
// instance at once (a job's cleanup, the reaper, a stale-name delete); all
// of them succeed and the instance is gone.
func TestIntegrationDeleteConcurrently(t *testing.T) {
	t.Parallel()
	c := teardownClient(t)
	for _, tc := range []struct {
		name    string
		start   bool
		parties int
	}{
		{name: "running, two parties", start: true, parties: 2},
		{name: "running, three parties", start: true, parties: 3},
		{name: "stopped, two parties", start: false, parties: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := teardownName(t, c)
			if err := c.CreateInstance(t.Context(), teardownPost(name, tc.start)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			errs := make([]error, tc.parties)
			var wg sync.WaitGroup
			ready := make(chan struct{})
			for i := range tc.parties {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-ready
					errs[i] = c.DeleteInstance(ctx, name)
				}()
			}
			close(ready)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("party %d: DeleteInstance() = %v, want nil", i, err)
				}
			}
			assertGone(t, c, name)
		})
	}
}

// TestIntegrationDeleteWhileCreating: a delete sent while the create (with
// start) is under way waits for it or stops it, and leaves nothing. Sent at
// once after the POST was accepted, the DELETE usually answers 404: the
// create makes its database record only later.
func TestIntegrationDeleteWhileCreating(t *testing.T) {
	t.Parallel()
	c := teardownClient(t)
	// poll calls ready every 5ms until it says so, the create is over or
	// ctx ends.
	poll := func(ctx context.Context, createDone <-chan struct{}, ready func() (bool, error)) error {
		for {
			if ok, err := ready(); ok || err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-createDone:
				return nil
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	for _, tc := range []struct {
		name string
		// ready says when to delete, once the create's POST was accepted
		ready func(ctx context.Context, name string) (bool, error)
	}{
		{name: "at once", ready: func(context.Context, string) (bool, error) { return true, nil }},
		{name: "once the record exists", ready: func(ctx context.Context, name string) (bool, error) {
			_, err := c.GetInstance(ctx, name)
			if IsNotFound(err) {
				return false, nil
			}
			return true, err
		}},
		{name: "while it starts", ready: func(ctx context.Context, name string) (bool, error) {
			inst, err := c.GetInstance(ctx, name)
			switch {
			case IsNotFound(err):
				return false, nil
			case err != nil:
				return false, err
			}
			return inst.Status != "Stopped", nil // Starting or Running: the start is under way or done
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := teardownName(t, c)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			op, err := c.async(ctx, request{method: "POST", path: "/instances", json: teardownPost(name, true)})
			if err != nil {
				t.Fatal(err)
			}
			// Follow the create from now on: the server forgets an
			// operation 5s after its end.
			var createErr error
			createDone := make(chan struct{})
			go func() {
				defer close(createDone)
				_, createErr = c.WaitOperation(ctx, op.ID)
			}()
			werr := poll(ctx, createDone, func() (bool, error) { return tc.ready(ctx, name) })
			var derr error
			if werr == nil {
				derr = c.DeleteInstance(ctx, name)
			}
			// The create either ended before the delete (success) or lost
			// the race (failure); both are fine, as long as it is over.
			<-createDone
			t.Logf("create operation: %v", createErr)
			if werr != nil {
				t.Fatal(werr)
			}
			if derr != nil {
				t.Fatalf("DeleteInstance() during the create = %v, want nil", derr)
			}
			if errors.Is(createErr, context.DeadlineExceeded) {
				t.Fatalf("create operation still running after the delete: %v", createErr)
			}
			assertGone(t, c, name)
		})
	}
}

// TestIntegrationDeleteTwice: a second delete, and a delete of a name that
// never existed, are no error.
func TestIntegrationDeleteTwice(t *testing.T) {
	t.Parallel()
	c := teardownClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	name := teardownName(t, c)
	if err := c.CreateInstance(ctx, teardownPost(name, true)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := c.DeleteInstance(ctx, name); err != nil {
			t.Fatalf("DeleteInstance() #%d = %v, want nil", i+1, err)
		}
	}
	assertGone(t, c, name)
	if err := c.DeleteInstance(ctx, uniqueName("jci-teardown-never-")); err != nil {
		t.Fatalf("DeleteInstance(never created) = %v, want nil", err)
	}
}
