package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"jerichoci/model"
)

// The result comes back while the instance is still being torn down; the
// teardown then finishes in the background and is counted.
func TestTeardownAfterTheResult(t *testing.T) {
	gate := make(chan struct{})
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult, teardownGate: gate}
	td := &Teardowns{}
	var log syncBuf
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig(), Teardowns: td}
	res, err := x.Execute(t.Context(), newJob(t, &log))
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v", res, err)
	}
	// Execute returned although the teardown is held: it runs after the result.
	if st := td.Stats(); st.Pending != 1 || st.Done != 0 {
		t.Errorf("stats while held = %+v", st)
	}
	if !strings.Contains(log.String(), "[pikaci] instance pikaci-af8dc8858830 is deleted in the background, after the result") {
		t.Errorf("host.log:\n%s", log.String())
	}
	close(gate)
	if err := td.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := td.Stats(); st != (TeardownStats{Done: 1}) {
		t.Errorf("stats = %+v", st)
	}
	if got := strings.Join(be.deleted, ","); got != "pikaci-af8dc8858830,pikaci-af8dc8858830" {
		t.Errorf("deleted = %s (stale delete, then the teardown)", got)
	}
}

func TestTeardownRetriesThenQuarantines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails int
		want  TeardownStats
	}{
		{"second try works", 1, TeardownStats{Done: 1}},
		{"every try fails", 3, TeardownStats{Failed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult, deleteFails: tc.fails}
			td := &Teardowns{Pause: time.Millisecond}
			var log syncBuf
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig(), Teardowns: td}
			res, err := x.Execute(t.Context(), newJob(t, &log))
			// A failed teardown is never the job's failure in this mode.
			if err != nil || res.Status != model.StatusPassed {
				t.Fatalf("Execute = %+v, %v", res, err)
			}
			if err := td.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			if st := td.Stats(); st != tc.want {
				t.Errorf("stats = %+v, want %+v", st, tc.want)
			}
		})
	}
}

// A daemon that stops waiting for its teardowns ends their pauses between
// tries: they are quarantined at once instead of sleeping past its exit.
func TestTeardownPausesEndWhenWaitGivesUp(t *testing.T) {
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult, deleteFails: 3}
	td := &Teardowns{Pause: time.Hour}
	var log syncBuf
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig(), Teardowns: td}
	if _, err := x.Execute(t.Context(), newJob(t, &log)); err != nil {
		t.Fatal(err)
	}
	gaveUp, cancel := context.WithCancel(t.Context())
	cancel()
	if err := td.Wait(gaveUp); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(ended ctx) = %v", err)
	}
	// Without the cut the teardown sleeps an hour: the bound turns that
	// into a failure instead of a hang.
	bound, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	if err := td.Wait(bound); err != nil {
		t.Fatalf("the teardown still pauses after Wait gave up: %v", err)
	}
	if st := td.Stats(); st != (TeardownStats{Failed: 1}) {
		t.Errorf("stats = %+v, want one quarantined", st)
	}
}
