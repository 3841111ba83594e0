package daemon_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// scrapeMetrics fetches /metrics and returns "name{labels}" → value.
func scrapeMetrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func readyz(base string) (int, string) {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsAndReadiness: after one passed and one failed lane, /metrics
// counts them in its counters and histograms; /readyz turns 503 while the
// NATS server is down and 200 once it is back.
func TestMetricsAndReadiness(t *testing.T) {
	require(t)
	ns := startKillableNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "lane-pass", Command: "echo ok"}, catalogJob{Target: "lane-fail", Command: "echo failing; exit 3"})
	base := fmt.Sprintf("http://127.0.0.1:%d", itest.FreePort(t))
	startDaemon(t, ns.url, "daemon-metrics", cat, 1, "--http-listen", strings.TrimPrefix(base, "http://"))
	if code, body := readyz(base); code != 200 {
		t.Fatalf("/readyz = %d %q, want 200", code, body)
	}
	o := newOrchestrator(t, ns.url)
	ids := map[string]string{"lane-pass": uuid.NewString(), "lane-fail": uuid.NewString()}
	for target, id := range ids {
		o.publish(t, protocol.JobSubject(target), o.spec(id, target), id)
	}
	res := o.waitResults(t, []string{ids["lane-pass"], ids["lane-fail"]}, 3*time.Minute)
	if res[ids["lane-pass"]].Status != model.StatusPassed || res[ids["lane-fail"]].Status != model.StatusFailed {
		t.Fatalf("results: pass %s, fail %s", res[ids["lane-pass"]].Status, res[ids["lane-fail"]].Status)
	}
	var m map[string]float64
	// The settlement is counted right after the result is stored.
	itest.WaitFor(t, "both settlements in /metrics", 30*time.Second, func() bool {
		m = scrapeMetrics(t, base)
		return m[`jerichoci_deliveries_total{outcome="ack"}`] == 2
	})
	for k, want := range map[string]float64{
		`jerichoci_jobs_started_total{lane="lane-pass"}`:                         1,
		`jerichoci_jobs_started_total{lane="lane-fail"}`:                         1,
		`jerichoci_jobs_finished_total{lane="lane-pass",status="passed"}`:        1,
		`jerichoci_jobs_finished_total{lane="lane-fail",status="failed"}`:        1,
		`jerichoci_run_duration_seconds_count{lane="lane-pass",status="passed"}`: 1,
		`jerichoci_run_duration_seconds_count{lane="lane-fail",status="failed"}`: 1,
		`jerichoci_queue_wait_seconds_count`:                                     2,
		`jerichoci_phase_duration_seconds_count{phase="wait_for_completion"}`:    2,
		`jerichoci_workers_busy`:                                                 0,
		`jerichoci_workers_idle`:                                                 1,
		`jerichoci_nats_up`:                                                      1,
		`jerichoci_incus_up`:                                                     1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if m[`jerichoci_run_duration_seconds_sum{lane="lane-pass",status="passed"}`] <= 0 {
		t.Errorf("the run duration histogram has no sum")
	}

	ns.kill9()
	itest.WaitFor(t, "/readyz to turn 503 with NATS down", time.Minute, func() bool {
		code, body := readyz(base)
		return code == 503 && strings.Contains(body, "nats:")
	})
	if code, body := readyz(base); code != 503 {
		t.Errorf("/readyz with NATS down = %d %q", code, body)
	} else {
		t.Logf("/readyz with NATS down: %q", body)
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz with NATS down: %v %v", resp, err)
	}
	ns.start()
	itest.WaitFor(t, "/readyz to turn 200 with NATS back", 2*time.Minute, func() bool {
		code, _ := readyz(base)
		return code == 200
	})
}
