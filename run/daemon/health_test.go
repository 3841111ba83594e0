package daemon

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"jerichoci/executor"
	"jerichoci/model"
	"jerichoci/run"
)

var errDial = errors.New(`incus: get server info: Get "https://10.0.0.254:8443/1.0": dial tcp 10.0.0.254:8443: connect: network is unreachable`)

// TestHealthStateMachine feeds check answers (ok: nil, else errDial) and
// checks the state after each and the transitions logged, once each.
func TestHealthStateMachine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int
		checks   string // one letter per check: o ok, x failed
		healthy  string // the state after each: h healthy, u unhealthy
		logs     []string
	}{
		{"starts healthy and stays", 2, "ooo", "hhh", nil},
		{"one failure is not enough", 2, "xoxo", "hhhh", nil},
		{"two in a row make it unhealthy", 2, "xx", "hu", []string{"warn incusd unreachable"}},
		{"logged once however long it lasts", 2, "xxxxx", "huuuu", []string{"warn incusd unreachable"}},
		{"one success heals", 2, "xxxo", "huuh", []string{"warn incusd unreachable", "info incusd reachable again (down 3s)"}},
		{"again and again", 1, "xoxo", "uhuh", []string{"warn incusd unreachable", "info incusd reachable again (down 1s)",
			"warn incusd unreachable", "info incusd reachable again (down 1s)"}},
		{"three needed", 3, "xxoxxx", "hhhhhu", []string{"warn incusd unreachable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			now := time.Unix(1_700_000_000, 0)
			h := &Health{Name: "incusd", Config: HealthConfig{Every: time.Second, Timeout: time.Second, Failures: tc.failures},
				Log: zap.New(core), Now: func() time.Time { return now }}
			for i, c := range tc.checks {
				now = now.Add(time.Second)
				var err error
				if c == 'x' {
					err = errDial
				}
				h.Observe(err)
				if got := h.Healthy(); got != (tc.healthy[i] == 'h') {
					t.Fatalf("after check %d (%q): healthy = %v, want %c", i+1, tc.checks[:i+1], got, tc.healthy[i])
				}
				if e := h.Err(); (e == nil) != h.Healthy() {
					t.Fatalf("Err = %v with healthy %v", e, h.Healthy())
				}
			}
			var got []string
			for _, e := range logs.All() {
				s := e.Level.String() + " " + strings.SplitN(e.Message, ";", 2)[0]
				if d, ok := e.ContextMap()["down_for"]; ok {
					s += " (down " + d.(time.Duration).String() + ")"
				}
				if e.Level == zapcore.WarnLevel && e.ContextMap()["error"] != errDial.Error() {
					t.Errorf("warning without the check's error: %v", e.ContextMap())
				}
				got = append(got, s)
			}
			if strings.Join(got, "\n") != strings.Join(tc.logs, "\n") {
				t.Errorf("logs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.logs, "\n"))
			}
		})
	}
}

func TestHealthErrNamesTheCause(t *testing.T) {
	h := &Health{Name: "incusd", Config: HealthConfig{Failures: 1}}
	h.Observe(errDial)
	want := "incusd unreachable: " + errDial.Error()
	if err := h.Err(); err == nil || err.Error() != want || !errors.Is(err, errDial) {
		t.Fatalf("Err = %v, want %q wrapping the check's error", err, want)
	}
	later := errors.New("incus: get server info: context deadline exceeded")
	h.Observe(later)
	if err := h.Err(); !errors.Is(err, later) {
		t.Errorf("Err = %v, want the latest failure", err)
	}
}

// probeFunc is a HealthProbe.
type probeFunc func(ctx context.Context) error

func (f probeFunc) Check(ctx context.Context) error { return f(ctx) }

// TestHealthCheckOnce: a probe that does not answer fails at its timeout;
// a check cut short by the daemon's stop counts for nothing.
func TestHealthCheckOnce(t *testing.T) {
	hang := probeFunc(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	h := &Health{Name: "incusd", Probe: hang, Config: HealthConfig{Every: time.Hour, Timeout: time.Millisecond, Failures: 1}}
	h.CheckOnce(t.Context())
	if err := h.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after a hanging check: Err = %v, want the deadline", err)
	}

	h = &Health{Name: "incusd", Probe: hang, Config: HealthConfig{Every: time.Hour, Timeout: time.Hour, Failures: 1}}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	h.CheckOnce(ctx)
	if !h.Healthy() {
		t.Fatalf("a check of a stopped daemon made it unhealthy: %v", h.Err())
	}
}

// TestHealthRunTicks checks at once, then at each tick.
func TestHealthRunTicks(t *testing.T) {
	answers := make(chan error)
	probe := probeFunc(func(context.Context) error { return <-answers })
	h := &Health{Name: "incusd", Probe: probe, Config: HealthConfig{Every: time.Hour, Timeout: time.Hour, Failures: 1}}
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); h.RunTicks(ctx, ticks) }()
	answers <- errDial // the first check, at once
	ticks <- time.Time{}
	if h.Healthy() {
		t.Fatal("healthy after a failed first check")
	}
	answers <- nil
	ticks <- time.Time{} // taken only once the second check is observed
	if !h.Healthy() {
		t.Fatalf("unhealthy after a good check: %v", h.Err())
	}
	answers <- nil
	cancel()
	<-done
}

// countingGate is a Gate over a Health that counts the workers in Open.
type countingGate struct {
	*Health
	mu      sync.Mutex
	waiting int
}

func (g *countingGate) Open(ctx context.Context) (<-chan struct{}, error) {
	g.mu.Lock()
	g.waiting++
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.waiting--; g.mu.Unlock() }()
	return g.Health.Open(ctx)
}

func (g *countingGate) inOpen() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// holdExec runs one job until released: a job running while incusd goes.
type holdExec struct {
	started chan struct{}
	release chan struct{}
}

func (x *holdExec) Execute(ctx context.Context, _ executor.Job) (executor.Result, error) {
	x.started <- struct{}{}
	select {
	case <-x.release:
		return passed(), nil
	case <-ctx.Done():
		return executor.Result{}, &executor.Error{Err: ctx.Err()}
	}
}

// TestDaemonTakesNoJobWhileUnhealthy: workers waiting for a job stop
// pulling when the gate closes (their pending pull ends) and take the
// queued jobs only once it opens; a job already running is not failed.
func TestDaemonTakesNoJobWhileUnhealthy(t *testing.T) {
	h := newHarness(t)
	health := &Health{Name: "incusd", Config: HealthConfig{Every: time.Hour, Timeout: time.Hour, Failures: 1}, Log: h.d.Log}
	gate := &countingGate{Health: health}
	x := &holdExec{started: make(chan struct{}, 1), release: make(chan struct{})}
	h.d.NewExecutor = func(string) run.JobExecutor { return x }
	q := &queueOf{}
	runningID := uuid.New()
	running := newMsg(h.spec(t, runningID, "demo-pass"), 1, 1)
	q.msgs = append(q.msgs, running)
	h.d.Queue, h.d.Gate, h.d.Config.Concurrency = q, gate, 2
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- h.d.Run(ctx) }()
	<-x.started // one worker runs the job; the other waits in a pull

	health.Observe(errDial)
	waitUntil(t, "the idle worker to leave its pull and wait at the gate", func() bool { return gate.inOpen() == 1 })
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	q.mu.Lock()
	for i, id := range ids {
		q.msgs = append(q.msgs, newMsg(h.spec(t, id, "demo-pass"), 1, uint64(i+2)))
	}
	q.mu.Unlock()

	close(x.release) // the running job finishes while incusd is "down"
	<-running.settled
	if got := running.got(); len(got) != 1 || got[0] != "ack" {
		t.Fatalf("the job running as the gate closed: replies %v, want ack", got)
	}
	if r := h.results.result(t, runningID.String()); r == nil || r.Status != model.StatusPassed {
		t.Fatalf("the job running as the gate closed: result %+v, want passed", r)
	}
	waitUntil(t, "both workers to wait at the gate", func() bool { return gate.inOpen() == 2 })
	q.mu.Lock()
	taken := 3 - len(q.msgs)
	q.mu.Unlock()
	if taken != 0 {
		t.Fatalf("%d jobs taken while unhealthy", taken)
	}

	x.started = make(chan struct{}, len(ids))
	health.Observe(nil)
	waitUntil(t, "every queued job settled", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.settled == 1+len(ids) })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if r := h.results.result(t, id.String()); r == nil || r.Status != model.StatusPassed {
			t.Errorf("job %s: result %+v, want passed", id, r)
		}
	}
}
