// Package web is the daemon's status page and JSON API (`serve
// --http-listen`, next to /metrics): the runs of a state root, newest
// first, each run's jobs, phases and logs, a running job's log followed
// live with server-sent events, and the records as JSON.
//
// It reads the state root through run's store (records of the original
// executor included) and follows live logs through LogFollower, which
// cmd/jerichoci fills with the NATS protocol client; without one (or for a
// run that has no daemon job file) it tails host.log from disk.
package web

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/internal/names"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

// LogFollower follows a daemon job's live output: *protocol.Client does.
// fn gets each chunk of the job's runs (every attempt), in order per run
// and job, from the start of what the logs stream holds when replay is
// set; stop ends it.
type LogFollower interface {
	FollowLogs(ctx context.Context, jobID string, replay bool, fn func(protocol.LogChunk)) (stop func(), err error)
}

// Config is what the pages read and how they follow logs.
type Config struct {
	// StateRoot holds runs/ (the daemon's --state-root).
	StateRoot string
	// Logs follows daemon jobs' live output; nil: host.log on disk only.
	Logs LogFollower
	// Jobs tells a push's lane never queued from one waiting (the daemon's
	// lookups); nil: every lane without a run is "queued".
	Jobs JobLookup
	// Log is the one logger.
	Log *zap.Logger
	// Poll is how often a stream looks at the job's record (and host.log
	// when it tails the file); 0 is 250ms.
	Poll time.Duration
	// MaxStreams bounds the live log streams open at once; 0 is 64.
	MaxStreams int
	// Now is the clock for durations of running runs; nil is time.Now.
	Now func() time.Time
}

// Server serves the pages and the API.
type Server struct {
	cfg   Config
	store *run.Store
	tmpl  *template.Template
	slots chan struct{}
	jobs  jobCache // the answers of Jobs

	ctx    context.Context // ends the live streams (Close)
	cancel context.CancelFunc
	once   sync.Once
}

//go:embed templates/*.html static/*
var assets embed.FS

// New returns the server of cfg.
func New(cfg Config) *Server {
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 64
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, store: run.NewStore(cfg.StateRoot), tmpl: parseTemplates(),
		slots: make(chan struct{}, cfg.MaxStreams), ctx: ctx, cancel: cancel}
}

// Close ends every live log stream (for http.Server.RegisterOnShutdown:
// a stream would otherwise hold the server's shutdown until its job ends).
func (s *Server) Close() { s.once.Do(s.cancel) }

// Handler serves:
//
//	GET /?status=&lane=&head=                the runs, newest first, by push
//	GET /pushes/{push}                       one push: its line, its lanes
//	GET /pushes/{push}/badge.svg             a push's status as a badge
//	GET /api/pushes?status=&lane=&head=      the pushes, JSON
//	GET /api/pushes/{push}                   one push, JSON
//	GET /lanes/{lane}/badge.svg?head=        a lane's newest run as a badge
//	GET /api/lanes/{lane}?head=              a lane's newest run, small JSON
//	GET /runs/{run}                          one run: jobs, timeline, logs
//	GET /runs/{run}/jobs/{job}/log           a job's host.log, as text
//	GET /runs/{run}/jobs/{job}/log/stream    a job's host.log, live (SSE)
//	GET /api/runs?limit=N                    the runs' summaries, JSON
//	GET /api/runs/{run}                      the run record as stored
//	GET /static/…                            the page's script and style
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.runsPage)
	mux.HandleFunc("GET /runs/{run}", s.runPage)
	mux.HandleFunc("GET /runs/{run}/jobs/{job}/log", s.jobLog)
	mux.HandleFunc("GET /runs/{run}/jobs/{job}/log/stream", s.jobLogStream)
	mux.HandleFunc("GET /api/runs", s.apiRuns)
	mux.HandleFunc("GET /api/runs/{run}", s.apiRun)
	mux.HandleFunc("GET /pushes/{push}", s.pushPage)
	mux.HandleFunc("GET /pushes/{push}/badge.svg", s.pushBadge)
	mux.HandleFunc("GET /api/pushes", s.apiPushes)
	mux.HandleFunc("GET /api/pushes/{push}", s.apiPush)
	mux.HandleFunc("GET /lanes/{lane}/badge.svg", s.laneBadge)
	mux.HandleFunc("GET /api/lanes/{lane}", s.apiLane)
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	return securityHeaders(mux)
}

// securityHeaders: no script but the page's own, no framing, no sniffing.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// validName: a run id or a catalog job id as a directory name (never
// ".", "..", a path or a hidden name) follows the project's name rule.
func validName(s string) bool { return names.Valid(s) }
