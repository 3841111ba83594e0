package metrics

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"jerichoci/model"
	"jerichoci/run/daemon"
)

// scrape returns the samples of /metrics as "name{labels}" → value text.
func scrape(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

func record(status model.RunStatus, created time.Time, took time.Duration) *model.RunRecord {
	fin := model.At(created.Add(took))
	return &model.RunRecord{RunID: "r", Status: status, CreatedAt: model.At(created), FinishedAt: &fin,
		Jobs: []model.JobRecord{{ID: "hello", RemoteLinuxVMExecution: &model.RemoteLinuxVMExecutionRecord{Backend: "incus",
			Phases: []model.PhaseRecord{{Phase: model.PhaseWaitForCompletion, StartedAt: model.At(created), FinishedAt: model.At(created.Add(took / 2))}}}}}}
}

func TestMetricsCountRunsAndSettlements(t *testing.T) {
	busy := 1
	m := New(Gauges{Workers: 2, Busy: func() int { return busy }, PoolReady: func() int { return 3 },
		NATS: func() bool { return true }, Incus: func() bool { return false }, IncusWaitLimits: func() uint64 { return 4 }})
	now := time.Now()
	m.RunStarted("demo-pass")
	m.RunStarted("demo-fail")
	m.Settled(daemon.Settlement{Target: "demo-pass", Action: "ack", Final: true, Record: record(model.StatusPassed, now, 2*time.Second), Published: now.Add(-time.Second)})
	m.Settled(daemon.Settlement{Target: "demo-fail", Action: "ack", Final: true, Record: record(model.StatusFailed, now, time.Second)})
	m.Settled(daemon.Settlement{Target: "demo-fail", Action: "nak"})
	m.Settled(daemon.Settlement{Action: "term", Final: true, Dead: true, Record: record(model.StatusFailed, now, 0)})
	m.Reaped(2)
	got := scrape(t, m.Handler())
	for k, want := range map[string]string{
		`jerichoci_jobs_started_total{lane="demo-pass"}`:                                 "1",
		`jerichoci_jobs_finished_total{lane="demo-pass",status="passed"}`:                "1",
		`jerichoci_jobs_finished_total{lane="demo-fail",status="failed"}`:                "1",
		`jerichoci_run_duration_seconds_count{lane="demo-pass",status="passed"}`:         "1",
		`jerichoci_run_duration_seconds_sum{lane="demo-pass",status="passed"}`:           "2",
		`jerichoci_run_duration_seconds_bucket{lane="demo-fail",status="failed",le="1"}`: "1",
		`jerichoci_queue_wait_seconds_count`:                                             "1",
		`jerichoci_phase_duration_seconds_count{phase="wait_for_completion"}`:            "3",
		`jerichoci_deliveries_total{outcome="ack"}`:                                      "2",
		`jerichoci_deliveries_total{outcome="nak"}`:                                      "1",
		`jerichoci_deliveries_total{outcome="term"}`:                                     "1",
		`jerichoci_dead_letters_total`:                                                   "1",
		`jerichoci_reaped_instances_total`:                                               "2",
		`jerichoci_workers_busy`:                                                         "1",
		`jerichoci_workers_idle`:                                                         "1",
		`jerichoci_pool_ready_instances`:                                                 "3",
		`jerichoci_nats_up`:                                                              "1",
		`jerichoci_incus_up`:                                                             "0",
		`jerichoci_incus_operation_wait_limit_total`:                                     "4",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	natsDown, incusDown := false, false
	h := New(Gauges{}).Handler(
		Check{Name: "nats", Fn: func(context.Context) error {
			if natsDown {
				return errors.New("not connected to NATS (RECONNECTING)")
			}
			return nil
		}},
		// The daemon's incusd health: an error that names its object.
		Check{Fn: func(context.Context) error {
			if incusDown {
				return errors.New("incusd unreachable: dial tcp 10.0.0.254:8443: connect: network is unreachable")
			}
			return nil
		}},
	)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	for _, tc := range []struct {
		path                string
		natsDown, incusDown bool
		code                int
		body                string
	}{
		{"/healthz", true, true, 200, "ok\n"},
		{"/readyz", false, false, 200, "ready\n"},
		{"/readyz", true, false, 503, "not ready: nats: not connected to NATS (RECONNECTING)\n"},
		{"/readyz", false, true, 503, "not ready: incusd unreachable: dial tcp 10.0.0.254:8443: connect: network is unreachable\n"},
		{"/readyz", true, true, 503, "not ready: nats: not connected to NATS (RECONNECTING); incusd unreachable: dial tcp 10.0.0.254:8443: connect: network is unreachable\n"},
	} {
		natsDown, incusDown = tc.natsDown, tc.incusDown
		if code, body := get(tc.path); code != tc.code || body != tc.body {
			t.Errorf("%s (nats down %v, incus down %v) = %d %q, want %d %q", tc.path, tc.natsDown, tc.incusDown, code, body, tc.code, tc.body)
		}
	}
}
