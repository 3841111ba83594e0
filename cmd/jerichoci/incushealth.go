package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"jerichoci/executor/incus"
	"jerichoci/run/daemon"
)

// The periodic health check of incusd (docs/RELIABILITY.md, "incusd
// unreachable from one worker"): while it fails, serve takes no jobs and
// /readyz answers 503.

func (c *serveConfig) incusHealthFromEnv(intVar func(string, *int), durVar func(string, *time.Duration)) {
	durVar("JERICHOCI_INCUS_CHECK_EVERY", &c.incusHealth.Every)
	durVar("JERICHOCI_INCUS_CHECK_TIMEOUT", &c.incusHealth.Timeout)
	intVar("JERICHOCI_INCUS_CHECK_FAILURES", &c.incusHealth.Failures)
}

func (c *serveConfig) incusHealthFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.incusHealth.Every, "incus-check-every", c.incusHealth.Every, "period of the health check of incusd (GET /1.0, trusted); while it fails this daemon takes no jobs and /readyz answers 503 (env JERICHOCI_INCUS_CHECK_EVERY)")
	fs.DurationVar(&c.incusHealth.Timeout, "incus-check-timeout", c.incusHealth.Timeout, "how long one health check of incusd may take before it counts as failed (env JERICHOCI_INCUS_CHECK_TIMEOUT)")
	fs.IntVar(&c.incusHealth.Failures, "incus-check-failures", c.incusHealth.Failures, "`N` failed health checks of incusd in a row that stop this daemon taking jobs; one good check resumes (env JERICHOCI_INCUS_CHECK_FAILURES)")
}

func (c serveConfig) incusHealthErrs() []error {
	var errs []error
	h := c.incusHealth
	if h.Every <= 0 {
		errs = append(errs, fmt.Errorf("--incus-check-every %s (env JERICHOCI_INCUS_CHECK_EVERY): expected a positive duration", h.Every))
	}
	if h.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--incus-check-timeout %s (env JERICHOCI_INCUS_CHECK_TIMEOUT): expected a positive duration", h.Timeout))
	}
	if h.Failures < 1 {
		errs = append(errs, fmt.Errorf("--incus-check-failures %d (env JERICHOCI_INCUS_CHECK_FAILURES): expected 1 or more", h.Failures))
	}
	return errs
}

// incusProbe is the daemon's HealthProbe of incusd: GET /1.0, its cheapest
// request, answered as trusted (a certificate no longer trusted fails it).
type incusProbe struct{ cl *incus.Client }

func (p incusProbe) Check(ctx context.Context) error {
	s, err := p.cl.Server(ctx)
	if err != nil {
		return err
	}
	if s.Auth != "trusted" {
		return fmt.Errorf("incus: GET /1.0 answered auth %q: incusd does not trust our client certificate", s.Auth)
	}
	return nil
}

// startIncusHealth checks incusd until serve returns; the daemon takes
// jobs only while it answers.
func (s *serving) startIncusHealth(cl *incus.Client, d *daemon.Daemon) *daemon.Health {
	h := &daemon.Health{Name: "incusd", Probe: incusProbe{cl}, Config: s.cfg.incusHealth, Log: s.log.Named("health")}
	d.Gate = h
	ctx, stop := context.WithCancel(s.teardown)
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	s.open.push("", func() error { stop(); <-done; return nil })
	return h
}
