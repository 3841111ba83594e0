package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/executor/hostlocal"
	"jerichoci/executor/incus"
	"jerichoci/internal/procid"
	"jerichoci/metrics"
	"jerichoci/model"
	"jerichoci/nixbuild"
	"jerichoci/run"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
	"jerichoci/targets"
	"jerichoci/web"
)

const serveUsage = `serve [--nats-url URL] [--concurrency N] [--state-root DIR] [--catalog FILE] [flags]

Runs the daemon in the foreground. Workers pull job specs from the JetStream
work queue (docs/PROTOCOL.md), one message per free worker, run them in
throwaway Incus instances and publish the results. Without --nats-url (or
JERICHOCI_NATS_URL) it starts an embedded nats-server with JetStream stored
under STATE/nats, listening on --nats-listen (127.0.0.1:4222), so that
'jerichoci enqueue' and any NATS client can connect.

The first SIGTERM/SIGINT stops pulling and lets running jobs finish within
--drain-timeout; a second one cancels them, deletes their instances and hands
their messages back to the queue. Exit status: 0 after a clean stop, 2 on bad
usage or when NATS or the state directory cannot be set up.`

func runServe(ctx context.Context, c *cli, args []string) int {
	cfg := defaultServeConfig()
	cfg.fromEnv(c.env)
	fs := c.flagSet("serve", serveUsage)
	cfg.flags(fs)
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return c.usageErr(fs, "unexpected argument %q", fs.Arg(0))
	}
	cfg.finish()
	if err := cfg.Validate(); err != nil {
		return c.fail(exitUsage, "invalid configuration:\n%v", err)
	}
	if err := c.serve(ctx, cfg); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	return exitOK
}

// serve runs the daemon until ctx ends and its jobs are done. Each step
// opens what it names and pushes its close on a stack, which closes all in
// reverse order when serve returns, on success and failure alike; every
// error of a step or of a close is in the error returned.
func (c *cli) serve(ctx context.Context, cfg serveConfig) (err error) {
	// Teardown outlives the first signal (which ends ctx): its contexts
	// are ctx's values without its cancellation, each with a timeout.
	s := &serving{cli: c, cfg: cfg, teardown: context.WithoutCancel(ctx)}
	s.open.watch = stopProgress(c.stderr, time.Second, 5*time.Second)
	defer func() { err = errors.Join(err, s.open.close()) }()
	cat, isolation, err := s.preflight(ctx)
	if err != nil {
		return err
	}
	s.log = cfg.exec.logger().With(zap.String("daemon", cfg.daemon.ID))
	s.open.push("", func() error { _ = s.log.Sync(); return nil }) // stderr: nowhere left to report it
	sigs := s.notifySignals()
	if cfg.httpListen != "" {
		if err := s.startStartupPage(); err != nil {
			return err
		}
	}
	conns, err := s.openNATS(ctx)
	if errors.Is(err, errStoppedWaiting) {
		fmt.Fprintf(c.stderr, "jerichoci serve: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	cl, err := s.openIncus(ctx)
	if err != nil {
		return err
	}
	d, pool := s.newDaemon(ctx, cat, isolation, conns.queue, cl)
	health := s.startIncusHealth(cl, d)
	if cfg.httpListen != "" {
		if err := s.startStatusPage(conns, cl, pool, d, health); err != nil {
			return err
		}
	}
	if err := s.subscribe(conns.queue, d); err != nil {
		return err
	}
	go s.countSignals(sigs, d)
	fmt.Fprintf(c.stderr, "jerichoci serve: %d workers on %s, state %s (daemon %s, fleet %s)\n", cfg.daemon.Concurrency,
		conns.worker.ConnectedUrlRedacted(), s.stateRoot, cfg.daemon.ID, conns.queue.Fleet)
	s.publishDaemon(conns)
	s.startPool(ctx, pool)
	stopped := make(chan struct{})
	defer close(stopped)
	go drainProgress(ctx, c.stderr, d.Busy, 5*time.Second, stopped)
	return d.Run(ctx)
}

// serving is one `serve`: its settings and what it has opened so far.
type serving struct {
	*cli
	cfg       serveConfig
	stateRoot string
	log       *zap.Logger
	open      closers
	// teardown is the context of closing: serve's, without its
	// cancellation.
	teardown context.Context
	// statusURL is the status page's address, once it listens.
	statusURL string
	// page answers on --http-listen while serve starts, then passes each
	// request to the status page (servestartup.go); nil without it.
	page *startupPage
}

// preflight checks what serve needs before it opens anything: the
// catalog, a sandboxed Nix for --allow-staged-builds, a remote incusd's
// trust (--incus-url), the state root (made
// absolute and created) and, with --allow-host-jobs, the host-jobs user.
func (s *serving) preflight(ctx context.Context) (*targets.Catalog, *hostlocal.Isolation, error) {
	cat, err := s.loadCatalog(s.cfg.catalog)
	if err != nil {
		return nil, nil, err
	}
	if s.cfg.allowStagedBuilds { // a flake of the job's source builds here: only sandboxed, never as root
		if err := (&nixbuild.Builder{Program: s.cfg.exec.Nix}).CheckSandboxed(ctx); err != nil {
			return nil, nil, fmt.Errorf("--allow-staged-builds: %w", err)
		}
	}
	if err := s.cfg.exec.checkRemoteIncus(ctx, s.env); err != nil {
		return nil, nil, err
	}
	s.stateRoot, err = filepath.Abs(s.cfg.exec.StateRoot)
	if err == nil {
		err = os.MkdirAll(run.NewStore(s.stateRoot).RunsDir(), 0o755)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("--state-root %q: %w", s.cfg.exec.StateRoot, err)
	}
	var isolation *hostlocal.Isolation
	if s.cfg.allowHostJobs {
		if isolation, err = hostJobsIsolation(s.cfg, s.stateRoot); err != nil {
			return nil, nil, err
		}
	}
	return cat, isolation, nil
}

// notifySignals counts signals itself: main's context ends at the first
// one (stop pulling); the second one cancels the running jobs
// (countSignals).
func (s *serving) notifySignals() <-chan os.Signal {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	s.open.push("", func() error { signal.Stop(sigs); close(sigs); return nil })
	return sigs
}

// countSignals reads serve's signals until they stop: the first one (which
// also ends serve's context) stops pulling, the second cancels the running
// jobs.
func (s *serving) countSignals(sigs <-chan os.Signal, d *daemon.Daemon) {
	n := 0
	for range sigs {
		n++
		if n == 1 {
			fmt.Fprintf(s.stderr, "jerichoci serve: stopping: no more jobs taken; running jobs may finish within %s (signal again to cancel them)\n", s.cfg.daemon.DrainTimeout)
			continue
		}
		fmt.Fprintln(s.stderr, "jerichoci serve: cancelling running jobs and handing them back to the queue")
		d.Kill()
	}
}

// serveConns are serve's NATS connections: the worker's, with the opened
// queue, and, on the embedded server, the reader's settings for the status
// page (nil with --nats-url: the page then reads on the worker's).
type serveConns struct {
	url       string
	worker    *nats.Conn
	queue     *daemon.Queue
	reader    *natsConfig
	inProcess *server.Server // the embedded server, nil with --nats-url
}

// openNATS starts the embedded server when no --nats-url is given (setting
// up the queue there as its admin), connects as the worker and opens the
// queue.
func (s *serving) openNATS(ctx context.Context) (serveConns, error) {
	conns := serveConns{url: s.cfg.nats.URL}
	ncfg := s.cfg.nats
	var connOpts []nats.Option
	if conns.url == "" {
		srv, users, err := s.startEmbedded()
		if err != nil {
			return conns, err
		}
		s.open.push("the embedded NATS server", func() error { srv.Shutdown(); srv.WaitForShutdown(); return nil })
		conns.url, conns.inProcess = srv.ClientURL(), srv
		// The daemon talks to its own server in process: no socket, no TLS.
		// The admin, whose password exists only in this process, sets up the
		// streams, buckets and the workers' consumer; the daemon then runs as
		// the worker, and the status page reads as the reader.
		connOpts = append(connOpts, nats.InProcessServer(srv))
		admin := natsConfig{User: users.Admin.User, Password: users.Admin.Password}
		if err := s.setUpQueue(ctx, admin, conns.url, connOpts...); err != nil {
			return conns, err
		}
		w, r := users.Roles[protocol.RoleWorker], users.Roles[protocol.RoleReader]
		ncfg = natsConfig{User: w.User, Password: w.Password}
		conns.reader = &natsConfig{User: r.User, Password: r.Password}
	}
	// The worker's replies (pulled jobs among them) come to an inbox no
	// client or reader may subscribe to (docs/PROTOCOL.md).
	connOpts = append(connOpts, nats.CustomInboxPrefix(protocol.WorkerInboxPrefix))
	nc, closed, err := s.connectWorker(ctx, ncfg, conns.url, connOpts)
	if err != nil {
		return conns, err
	}
	s.open.push("NATS connection", func() error { return drainConn(nc, closed) })
	conns.worker = nc
	conns.queue, err = s.openQueue(ctx, nc)
	return conns, err
}

// startEmbedded starts the embedded NATS server with its users'
// credentials, warning when it listens beyond this host.
func (s *serving) startEmbedded() (*server.Server, embeddedUsers, error) {
	cfg := s.cfg.nats
	host, port, _ := splitListen(cfg.Listen) // validated
	if !loopbackHost(host) {
		fmt.Fprintf(s.stderr, "jerichoci serve: warning: the embedded NATS server listens on %s, reachable from other hosts and from guests on the Incus bridge; clients need the credentials in %s\n",
			cfg.Listen, credentialsPath(s.stateRoot))
		if cfg.ServerTLSCert == "" {
			fmt.Fprintln(s.stderr, "jerichoci serve: warning: --nats-insecure-listen: the credentials and every job spec cross the network in clear text")
		}
	}
	clientHost := host
	if clientHost == "" || clientHost == "0.0.0.0" || clientHost == "::" {
		clientHost = "127.0.0.1"
	}
	scheme := "nats"
	if cfg.ServerTLSCert != "" {
		scheme = "tls"
	}
	users, err := embeddedCredentials(s.stateRoot, scheme+"://"+net.JoinHostPort(clientHost, strconv.Itoa(port)))
	if err != nil {
		return nil, users, err
	}
	srv, err := startEmbedded(embeddedOptions{Listen: cfg.Listen, StoreDir: filepath.Join(s.stateRoot, "nats"),
		Users: users, TLSCert: cfg.ServerTLSCert, TLSKey: cfg.ServerTLSKey}, s.log.Named("nats-server"))
	return srv, users, err
}

// setUpQueue creates the streams, buckets and the workers' consumer as the
// admin, on a connection of its own that it closes.
func (s *serving) setUpQueue(ctx context.Context, admin natsConfig, url string, opts ...nats.Option) error {
	anc, _, err := admin.connect(url, "jerichoci serve "+s.cfg.daemon.ID+" setup", s.log.Named("nats"), opts...)
	if err != nil {
		return err
	}
	defer anc.Close()
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = daemon.OpenQueue(setup, anc, s.cfg.queue)
	return err
}

// drainConn flushes and drains nc and waits (30 s at most) until it is
// closed; past that it closes it at once.
func drainConn(nc *nats.Conn, closed <-chan struct{}) error {
	flushErr := nc.Flush()
	if flushErr != nil {
		flushErr = fmt.Errorf("flush: %w", flushErr)
	}
	if err := nc.Drain(); err != nil {
		nc.Close()
		return errors.Join(flushErr, fmt.Errorf("drain: %w", err))
	}
	select {
	case <-closed:
		return flushErr
	case <-time.After(30 * time.Second):
		nc.Close()
		return errors.Join(flushErr, errors.New("drain: not done within 30s; closed"))
	}
}

// openIncus connects to Incus and checks the guests' network.
func (s *serving) openIncus(ctx context.Context) (*incus.Client, error) {
	cl, err := s.cfg.exec.incusClient(s.env, s.log.Named("incus"))
	if err != nil {
		return nil, err
	}
	s.open.push("incus client", cl.Close)
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return cl, checkGuestNetwork(setup, cl, s.cfg.exec.GuestNetwork)
}

// newDaemon wires the daemon: its executors over cl (routed by runtime),
// the warm pool (nil when --warm is 0; not started yet) and the run
// lifecycle. Waiting for the instances' teardowns is pushed on the stack.
func (s *serving) newDaemon(ctx context.Context, cat *targets.Catalog, isolation *hostlocal.Isolation, q *daemon.Queue, cl *incus.Client) (*daemon.Daemon, *executor.Pool) {
	cfg, log, stateRoot := s.cfg, s.log, s.stateRoot
	warm := cfg.warm
	if warm < 0 {
		warm = cfg.daemon.Concurrency
	}
	var sizing executor.PoolSizing
	if warm != 0 {
		sizing = cfg.warmSizing.sizing(warm, cfg.daemon.Concurrency, cfg.exec.MaxProcesses, "/proc/sys/kernel/pid_max")
		warm = sizing.Ceiling()
	}
	guestWarnings(s.stderr, cfg.exec, cfg.daemon.Concurrency+warm, "/proc/sys/kernel/pid_max")
	be, insts := incus.NewBackend(cl), daemonInstances{incus.NewInstances(cl)}

	cfg.daemon.Fleet, cfg.daemon.Process = q.Fleet, thisProcess()
	// Instances are deleted after their job's result is published, in the
	// background; serve waits for those teardowns before it exits.
	teardowns := &executor.Teardowns{Log: log.Named("teardown")}
	s.open.push("instance teardowns", func() error {
		wait, cancel := context.WithTimeout(s.teardown, cfg.exec.executorConfig().CleanupTimeout)
		defer cancel()
		if err := teardowns.Wait(wait); err != nil {
			// Not serve's failure: the reaper deletes what is left.
			log.Warn("instance teardowns still running at exit; the reaper will delete them", zap.Int("pending", teardowns.Stats().Pending))
		}
		return nil
	})
	warnPoolSpace(ctx, s.stderr, be, cfg.exec.executorConfig(), cfg.daemon.Concurrency, log.Named("space"))
	// The warm pool: started instances ready for the next jobs.
	var pool *executor.Pool
	if warm != 0 {
		pc := cfg.exec.executorConfig()
		pc.Fleet = q.Fleet
		cfg.daemon.PoolOwner = daemon.PoolOwnerPrefix + cfg.daemon.ID + "/" + uuid.NewString()[:8]
		cfg.daemon.PoolMaxAge = executor.DefaultPoolMaxAge
		pool = &executor.Pool{Backend: be, Config: pc, Sizing: sizing, Queue: q, Load: func() int { return teardowns.Stats().Pending },
			Dir: filepath.Join(stateRoot, "pool"), Owner: cfg.daemon.PoolOwner, MaxAge: cfg.daemon.PoolMaxAge, Log: log.Named("pool"), PreExec: true}
	}
	daemonRunner := newRunner(s.env, cfg.exec, stateRoot, log)
	allowedSecrets := cfg.secretEnv
	daemonRunner.SecretEnvAllowed = func(name string) bool { return slices.Contains(allowedSecrets, name) }
	if !cfg.allowStagedBuilds {
		daemonRunner.Outputs = run.RefuseStagedBuilds{}
	}
	return &daemon.Daemon{
		Config: cfg.daemon, Queue: q, Jobs: q.Jobs, Results: q.Results, Sources: q, Events: q, Catalog: cat,
		Records: q, DeadLetters: q, RecordLimit: int(min(protocol.MaxResultValue, q.MaxPayload())) - 16<<10,
		NewExecutor: func(owner string) run.JobExecutor {
			ec := cfg.exec.executorConfig()
			ec.Owner, ec.Fleet = owner, q.Fleet
			var host run.JobExecutor = run.RefuseHostJobs{}
			if cfg.allowHostJobs {
				x := hostExecutor(s.env, stateRoot, cfg.exec.Nix, log.Named("hostlocal"))
				x.Isolate = isolation
				host = x
			}
			return run.JobRouter{Incus: &executor.RemoteLinuxVM{Backend: be, Config: ec, Log: log.Named("executor"), Teardowns: teardowns, Pool: pool, Store: hostNix(cfg.exec.Nix, log)}, Host: host}
		},
		Instances: insts, Processes: procid.Host{}, Presence: q,
		Waiting: q,
		Runner:  daemonRunner,
		Log:     log.Named("daemon"),
	}, pool
}

// subscribe takes the cancel requests and the queue's give-ups for d.
func (s *serving) subscribe(q *daemon.Queue, d *daemon.Daemon) error {
	cancelSub, err := q.SubscribeCancels(d, 30*time.Second)
	if err != nil {
		return err
	}
	s.open.push("cancel subscription", cancelSub.Unsubscribe)
	catalogSub, err := q.SubscribeCatalog(d.CatalogReply)
	if err != nil {
		return err
	}
	s.open.push("catalog subscription", catalogSub.Unsubscribe)
	lookupSub, err := q.SubscribeLookups(d, 30*time.Second)
	if err != nil {
		return err
	}
	s.open.push("lookup subscription", lookupSub.Unsubscribe)
	giveUpSub, err := q.SubscribeGiveUps(d.GiveUp, s.log.Named("giveup"))
	if err != nil {
		return err
	}
	s.open.push("give-up subscription", giveUpSub.Unsubscribe)
	return nil
}

// startPool fills the warm pool (nil: none) and keeps it until serve
// stops, past the first signal; stopping it deletes the idle instances.
func (s *serving) startPool(ctx context.Context, pool *executor.Pool) {
	if pool == nil {
		return
	}
	poolCtx, stopPool := context.WithCancel(s.teardown)
	poolDone := make(chan struct{})
	go func() {
		defer close(poolDone)
		if err := pool.Prewarm(ctx, model.RolePikaciRunner.DefaultImageAlias()); err != nil {
			s.log.Warn("warm pool: prewarm", zap.Error(err))
		}
		pool.Run(poolCtx)
	}()
	s.open.push("the warm pool (deleting its idle instances)", func() error { stopPool(); <-poolDone; return nil })
}

// startStatusPage serves the status page, its JSON API, /metrics and the
// health checks on --http-listen until serve stops; they answer past the
// first signal, while running jobs drain.
func (s *serving) startStatusPage(conns serveConns, cl *incus.Client, pool *executor.Pool, d *daemon.Daemon, incusd *daemon.Health) error {
	cfg, log := s.cfg, s.log
	g := metrics.Gauges{Workers: cfg.daemon.Concurrency, Busy: d.Busy, NATS: conns.worker.IsConnected, IncusWaitLimits: cl.WaitLimits,
		Incus: incusd.Healthy}
	if pool != nil {
		g.PoolReady = func() int { return pool.Stats().Ready }
	}
	m := metrics.New(g)
	d.Observer = m
	// The status page and JSON API: live logs come from NATS, read as
	// the reader on the embedded server (else on the daemon's connection).
	logsConn := conns.worker
	if conns.reader != nil {
		rnc, _, err := conns.reader.connect(conns.url, "jerichoci serve "+cfg.daemon.ID+" page", log.Named("nats"), nats.InProcessServer(conns.inProcess))
		if err != nil {
			return err
		}
		s.open.push("", func() error { rnc.Close(); return nil })
		logsConn = rnc
	}
	logs, err := protocol.NewClient(logsConn)
	if err != nil {
		return err
	}
	health := m.Handler(
		metrics.Check{Name: "nats", Fn: conns.queue.Ready},
		// Unnamed: the health's error names incusd ("incusd unreachable: …").
		metrics.Check{Fn: func(context.Context) error { return incusd.Err() }},
	)
	status := web.New(web.Config{StateRoot: s.stateRoot, Logs: logs, Jobs: logs, Log: log.Named("web")})
	mux := http.NewServeMux()
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle(p, health)
	}
	mux.Handle("/", status.Handler())
	// The startup page's server (which checks every route's Host,
	// /metrics and the health checks too: docs/SECURITY.md) serves the
	// page from now on; its shutdown ends the live log streams.
	s.page.become(mux, status.Close)
	log.Info("status page, metrics and health", zap.String("url", s.statusURL))
	return nil
}

// serveHTTP serves srv on ln in the background. The function it returns
// shuts srv down (within 5 s of ctx) and returns the shutdown's error and
// the one Serve stopped with, unless that is the shutdown itself; such an
// error is logged when it happens, too.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, log *zap.Logger) func() error {
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped serving", zap.String("addr", ln.Addr().String()), zap.Error(err))
		}
		served <- err
	}()
	return func() error {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("serve: %w", serr))
		}
		return err
	}
}

// daemonInstances is the reaper's daemon.InstanceManager: the Incus
// adapter (Delete as is), its list in the daemon's type of the same fields.
type daemonInstances struct{ incus.Instances }

func (i daemonInstances) ListOwned(ctx context.Context) ([]daemon.OwnedInstance, error) {
	owned, err := i.Instances.ListOwned(ctx)
	var out []daemon.OwnedInstance
	for _, in := range owned {
		out = append(out, daemon.OwnedInstance(in))
	}
	return out, err
}

// hostJobsIsolation is how this daemon runs host-local jobs: as root, as
// the --host-jobs-user, which must exist, be unprivileged and be able to
// reach the state root (whose modes it then sets, hostlocal.PrepareStateRoot);
// as another user, as that user itself, which cannot switch. Either way
// with a scrubbed environment (docs/SECURITY.md).
func hostJobsIsolation(cfg serveConfig, stateRoot string) (*hostlocal.Isolation, error) {
	const flag = "--host-jobs-user"
	if os.Geteuid() != 0 {
		if cfg.hostJobsUserSet {
			if me, err := user.Current(); err != nil || me.Username != cfg.hostJobsUser {
				return nil, fmt.Errorf("%s %q (env JERICHOCI_HOST_JOBS_USER): switching host-local jobs to another user needs root; this daemon runs as uid %d, and runs them as itself without the flag", flag, cfg.hostJobsUser, os.Geteuid())
			}
		}
		return &hostlocal.Isolation{}, nil
	}
	u, err := hostlocal.LookupUser(cfg.hostJobsUser)
	if err != nil {
		return nil, fmt.Errorf("--allow-host-jobs as root runs host-local jobs as an unprivileged %s (env JERICHOCI_HOST_JOBS_USER, default %s), and %q is not usable: %w", flag, hostlocal.DefaultUser, cfg.hostJobsUser, err)
	}
	if err := hostlocal.CheckReachable(u, stateRoot); err != nil {
		return nil, fmt.Errorf("--allow-host-jobs: %w", err)
	}
	if err := hostlocal.PrepareStateRoot(stateRoot); err != nil {
		return nil, fmt.Errorf("--allow-host-jobs: set the modes of the state root %s for host-local jobs: %w", stateRoot, err)
	}
	return &hostlocal.Isolation{User: u, MaxProcesses: cfg.hostJobsMaxProcesses}, nil
}
