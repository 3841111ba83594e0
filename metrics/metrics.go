// Package metrics is the daemon's Prometheus metrics and health endpoints
// (`serve --http-listen`): /metrics, /healthz and /readyz. It observes the
// daemon through run/daemon's Observer and reads gauges from functions the
// wiring gives it, so it names no backend.
package metrics

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"jerichoci/run/daemon"
)

// Metrics holds the daemon's metrics; it is a daemon.Observer.
type Metrics struct {
	reg *prometheus.Registry

	started     *prometheus.CounterVec
	finished    *prometheus.CounterVec
	runDuration *prometheus.HistogramVec
	queueWait   prometheus.Histogram
	phase       *prometheus.HistogramVec
	deliveries  *prometheus.CounterVec
	reaped      prometheus.Counter
	dead        prometheus.Counter
}

// Gauges are read when /metrics is scraped.
type Gauges struct {
	Workers   int        // the daemon's concurrency
	Busy      func() int // workers running an attempt
	PoolReady func() int // ready warm-pool instances; nil: no pool
	NATS      func() bool
	Incus     func() bool
	// IncusWaitLimits counts Incus operation waits that ended at their
	// long-poll limit with the operation still running; nil: none.
	IncusWaitLimits func() uint64
}

var _ daemon.Observer = (*Metrics)(nil)

// durationBuckets span a short job (a fraction of a second) to hours.
var durationBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400}

// phaseBuckets add milliseconds below durationBuckets: a warm job's
// launch_guest and collect_artifacts take a few.
var phaseBuckets = append([]float64{.001, .0025, .005, .01, .025}, durationBuckets...)

// New registers every metric, the gauges and the Go runtime's.
func New(g Gauges) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.started = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jerichoci_jobs_started_total",
		Help: "Runs started, by target (a lane's target id)."}, []string{"lane"})
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jerichoci_jobs_finished_total",
		Help: "Final records, by target and status."}, []string{"lane", "status"})
	m.runDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jerichoci_run_duration_seconds",
		Help: "Run duration of final records (created to finished), by target and status.", Buckets: durationBuckets},
		[]string{"lane", "status"})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jerichoci_queue_wait_seconds",
		Help: "From the job's publish to its run's start, for final records.", Buckets: durationBuckets})
	m.phase = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jerichoci_phase_duration_seconds",
		Help: "Duration of each execution phase of the jobs of final records.", Buckets: phaseBuckets}, []string{"phase"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jerichoci_deliveries_total",
		Help: "Settled deliveries by outcome: ack, nak (back to the queue) or term."}, []string{"outcome"})
	m.reaped = prometheus.NewCounter(prometheus.CounterOpts{Name: "jerichoci_reaped_instances_total",
		Help: "Orphan instances deleted by the reaper."})
	m.dead = prometheus.NewCounter(prometheus.CounterOpts{Name: "jerichoci_dead_letters_total",
		Help: "Jobs given up, with a dead letter."})
	m.reg.MustRegister(m.started, m.finished, m.runDuration, m.queueWait, m.phase, m.deliveries, m.reaped, m.dead,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if g.Busy != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jerichoci_workers_busy",
			Help: "Workers running an attempt."}, func() float64 { return float64(g.Busy()) }))
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jerichoci_workers_idle",
			Help: "Workers waiting for a job."}, func() float64 { return float64(max(g.Workers-g.Busy(), 0)) }))
	}
	if g.PoolReady != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jerichoci_pool_ready_instances",
			Help: "Warm-pool instances started and waiting for a job."}, func() float64 { return float64(g.PoolReady()) }))
	}
	if g.IncusWaitLimits != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jerichoci_incus_operation_wait_limit_total",
			Help: "Waits on an Incus operation that reached their long-poll limit (30 s) with the operation still running: a stall."},
			func() float64 { return float64(g.IncusWaitLimits()) }))
	}
	for name, f := range map[string]func() bool{"nats": g.NATS, "incus": g.Incus} {
		if f == nil {
			continue
		}
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jerichoci_" + name + "_up",
			Help: "1 when " + name + " answers, else 0."}, func() float64 {
			if f() {
				return 1
			}
			return 0
		}))
	}
	return m
}

// RunStarted counts a run.
func (m *Metrics) RunStarted(target string) { m.started.WithLabelValues(target).Inc() }

// Settled counts a delivery and, for a final record, its run.
func (m *Metrics) Settled(s daemon.Settlement) {
	m.deliveries.WithLabelValues(s.Action).Inc()
	if s.Dead {
		m.dead.Inc()
	}
	if !s.Final || s.Record == nil {
		return
	}
	rec := s.Record
	status := string(rec.Status)
	m.finished.WithLabelValues(s.Target, status).Inc()
	if rec.FinishedAt != nil {
		m.runDuration.WithLabelValues(s.Target, status).Observe(rec.FinishedAt.Sub(rec.CreatedAt.Time).Seconds())
	}
	if !s.Published.IsZero() {
		if w := rec.CreatedAt.Sub(s.Published); w >= 0 {
			m.queueWait.Observe(w.Seconds())
		}
	}
	for _, j := range rec.Jobs {
		if e := j.RemoteLinuxVMExecution; e != nil {
			for _, p := range e.Phases {
				m.phase.WithLabelValues(string(p.Phase)).Observe(p.FinishedAt.Sub(p.StartedAt.Time).Seconds())
			}
		}
	}
}

// Reaped counts deleted orphans.
func (m *Metrics) Reaped(n int) { m.reaped.Add(float64(n)) }

// Check is one readiness check: nil when ready. /readyz says "Name: error",
// or the error alone when Name is "" (an error that names its object).
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Handler serves /metrics, /healthz (the process serves) and /readyz
// (every check passes within 3 s; 503 naming the failures otherwise).
func (m *Metrics) Handler(checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		var failed []string
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil && c.Name == "" {
				failed = append(failed, err.Error())
			} else if err != nil {
				failed = append(failed, c.Name+": "+err.Error())
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+strings.Join(failed, "; "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
