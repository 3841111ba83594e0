package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"jerichoci/internal/backoff"
	"jerichoci/run/daemon"
	"jerichoci/web"
)

// Waiting for NATS at start (docs/RELIABILITY.md, "A fleet that starts
// with its cluster"): hosts boot together, so a daemon may come up before
// its NATS servers listen, or while their cluster still elects its leader
// and places the streams. Such errors are retried with backoff for
// --nats-wait, each said in the log and on /readyz; any other error (bad
// credentials, a configuration the server refuses) ends serve at once.

// errStoppedWaiting: serve was stopped (a signal) while it waited for
// NATS; a clean stop, not a failure.
var errStoppedWaiting = errors.New("stopped while waiting for NATS")

// defaultNATSWait is --nats-wait's default.
const defaultNATSWait = 10 * time.Minute

// natsStartupBackoff paces the tries: 1s, 2s, 4s … at most 15s.
var natsStartupBackoff = backoff.Backoff{First: time.Second, Max: 15 * time.Second}

// natsAttemptTimeout bounds one try to set up the queue: 20s, doubled
// with each try, at most 2 minutes. A loaded cluster
// can answer each of the set-up's dozen requests in seconds, so that a
// fixed bound fails every try at the same late step.
var natsAttemptTimeout = backoff.Backoff{First: 20 * time.Second, Max: 2 * time.Minute}

// settling reports whether err is one a NATS server or cluster still
// starting gives: no server listening yet, a request unanswered in time, a
// JetStream cluster without a leader or without the peers to place the
// replicas yet. Credentials refused, a stream of another configuration and
// the like are not.
func settling(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case 10008, // JetStream system temporarily unavailable
			10005, // no suitable peers for placement
			10023, // insufficient resources (peers not known yet)
			10009, // the cluster cannot handle the request now (no leader)
			10007: // the cluster has not assigned the asset to a server yet
			return true
		}
		return false
	}
	return errors.Is(err, nats.ErrNoServers) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

// untilSettled runs try until it succeeds, fails with an error that is
// not settling, ctx ends or wait has passed (0: one try), pausing with
// backoff between tries and saying each wait in the log and to page.
func untilSettled[T any](ctx context.Context, what string, wait time.Duration, log *zap.Logger, page *startupPage, try func(context.Context) (T, error)) (T, error) {
	start := time.Now()
	b, bound := natsStartupBackoff, natsAttemptTimeout
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, bound.Next())
		v, err := try(actx)
		cancel()
		if err == nil {
			if n > 1 {
				log.Info("NATS is ready", zap.String("step", what), zap.Int("tries", n), zap.Duration("waited", time.Since(start).Round(time.Millisecond)))
			}
			return v, nil
		}
		if ctx.Err() != nil {
			return v, fmt.Errorf("%w: %s (last try: %w)", errStoppedWaiting, what, err)
		}
		if !settling(err) {
			return v, err
		}
		pause := b.Next()
		if time.Since(start)+pause > wait {
			return v, fmt.Errorf("%w (still failing after %s of tries; --nats-wait %s)", err, time.Since(start).Round(time.Second), wait)
		}
		reason := fmt.Sprintf("waiting for NATS to %s (try %d failed: %v); next try in %s", what, n, err, pause)
		log.Warn("NATS not ready yet; waiting", zap.String("step", what), zap.Int("try", n), zap.Duration("next_in", pause), zap.Error(err))
		page.setReason(reason)
		if backoff.Sleep(ctx, pause) != nil {
			return v, fmt.Errorf("%w: %s (last try: %w)", errStoppedWaiting, what, err)
		}
	}
}

// startupPage answers on --http-listen from serve's start, before the
// status page can: /healthz ok, /readyz 503 with why serve is not ready
// yet, anything else 503. The status page then takes its listener over
// (serve): one listener, no gap.
type startupPage struct {
	mu      sync.Mutex
	reason  string
	handler http.Handler // the status page once it is up
	onStop  func()
}

func (p *startupPage) setReason(r string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.reason = r
	p.mu.Unlock()
}

// become hands every request from now on to h; onStop runs when the
// server shuts down.
func (p *startupPage) become(h http.Handler, onStop func()) {
	p.mu.Lock()
	p.handler, p.onStop = h, onStop
	p.mu.Unlock()
}

func (p *startupPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	h, reason := p.handler, p.reason
	p.mu.Unlock()
	if h != nil {
		h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.URL.Path == "/healthz" {
		fmt.Fprintln(w, "ok: starting")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	if reason == "" {
		reason = "starting"
	}
	fmt.Fprintf(w, "not ready: %s\n", reason)
}

func (p *startupPage) stopped() {
	p.mu.Lock()
	f := p.onStop
	p.mu.Unlock()
	if f != nil {
		f()
	}
}

// startStartupPage listens on --http-listen at once and serves the
// startup page there until the status page takes over.
func (s *serving) startStartupPage() error {
	cfg := s.cfg
	hosts, err := web.NewHostCheck(cfg.httpListen, cfg.httpAllowedHosts)
	if err != nil {
		return fmt.Errorf("--http-allowed-host: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.httpListen)
	if err != nil {
		return fmt.Errorf("--http-listen %s: %w (another daemon there? pass --http-listen '' to disable)", cfg.httpListen, err)
	}
	s.page = &startupPage{}
	srv := &http.Server{Handler: hosts.Handler(s.page), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(s.page.stopped)
	addr := ln.Addr().String()
	s.statusURL = "http://" + addr + "/"
	s.open.push("status page on "+addr, serveHTTP(s.teardown, srv, ln, s.log))
	return nil
}

// connectWorker connects as ncfg to url, waiting for servers not yet
// listening.
func (s *serving) connectWorker(ctx context.Context, ncfg natsConfig, url string, opts []nats.Option) (*nats.Conn, <-chan struct{}, error) {
	type conn struct {
		nc     *nats.Conn
		closed <-chan struct{}
	}
	c, err := untilSettled(ctx, "accept a connection", s.cfg.natsWait, s.log, s.page, func(context.Context) (conn, error) {
		nc, closed, err := ncfg.connect(url, "jerichoci serve "+s.cfg.daemon.ID, s.log.Named("nats"), opts...)
		return conn{nc, closed}, err
	})
	return c.nc, c.closed, err
}

// openQueue opens the queue on nc, waiting for a settling cluster. A
// set-up request sent again because it went unanswered is said in the log
// and on /readyz.
func (s *serving) openQueue(ctx context.Context, nc *nats.Conn) (*daemon.Queue, error) {
	qcfg := s.cfg.queue
	qcfg.Resent = func(what string, try int, err error) {
		s.log.Warn("NATS did not answer a set-up request in time; sending it again",
			zap.String("request", what), zap.Int("try", try), zap.Error(err))
		s.page.setReason(fmt.Sprintf("waiting for NATS to %s (request %d unanswered: %v); sent again", what, try, err))
	}
	return untilSettled(ctx, "set up the queue", s.cfg.natsWait, s.log, s.page, func(ctx context.Context) (*daemon.Queue, error) {
		return daemon.OpenQueue(ctx, nc, qcfg)
	})
}
