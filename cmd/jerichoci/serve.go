package main

import (
	"context"
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
	"jerichoci/metrics"
	"jerichoci/model"
	"jerichoci/nixbuild"
	"jerichoci/run"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
	"jerichoci/web"
)

func init() {
	register("serve", command{summary: "run the daemon: workers pull job specs from NATS JetStream and run them", run: runServe})
}

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
	cat, err := c.loadCatalog(cfg.catalog)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if cfg.allowStagedBuilds { // a flake of the job's source builds here: only sandboxed, never as root
		if err := (&nixbuild.Builder{}).CheckSandboxed(ctx); err != nil {
			return c.fail(exitUsage, "--allow-staged-builds: %v", err)
		}
	}
	stateRoot, err := filepath.Abs(cfg.exec.StateRoot)
	if err == nil {
		err = os.MkdirAll(run.NewStore(stateRoot).RunsDir(), 0o755)
	}
	if err != nil {
		return c.fail(exitUsage, "--state-root %q: %v", cfg.exec.StateRoot, err)
	}
	var isolation *hostlocal.Isolation
	if cfg.allowHostJobs {
		if isolation, err = hostJobsIsolation(cfg, stateRoot); err != nil {
			return c.fail(exitUsage, "%v", err)
		}
	}
	log := cfg.exec.logger().With(zap.String("daemon", cfg.daemon.ID))
	defer log.Sync() //nolint:errcheck // stderr

	// Count signals ourselves: main's context ends at the first one (stop
	// pulling); the second one cancels the running jobs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	url, ncfg := cfg.nats.URL, cfg.nats
	var connOpts []nats.Option
	var readerCfg *natsConfig // the status page's user on the embedded server
	var natsServer *server.Server
	if url == "" {
		host, port, _ := splitListen(cfg.nats.Listen) // validated
		if !loopbackHost(host) {
			fmt.Fprintf(c.stderr, "jerichoci serve: warning: the embedded NATS server listens on %s, reachable from other hosts and from guests on the Incus bridge; clients need the credentials in %s\n",
				cfg.nats.Listen, credentialsPath(stateRoot))
			if cfg.nats.ServerTLSCert == "" {
				fmt.Fprintln(c.stderr, "jerichoci serve: warning: --nats-insecure-listen: the credentials and every job spec cross the network in clear text")
			}
		}
		clientHost := host
		if clientHost == "" || clientHost == "0.0.0.0" || clientHost == "::" {
			clientHost = "127.0.0.1"
		}
		scheme := "nats"
		if cfg.nats.ServerTLSCert != "" {
			scheme = "tls"
		}
		users, err := embeddedCredentials(stateRoot, scheme+"://"+net.JoinHostPort(clientHost, strconv.Itoa(port)))
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		srv, err := startEmbedded(embeddedOptions{Listen: cfg.nats.Listen, StoreDir: filepath.Join(stateRoot, "nats"),
			Users: users, TLSCert: cfg.nats.ServerTLSCert, TLSKey: cfg.nats.ServerTLSKey}, log.Named("nats-server"))
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		url, natsServer = srv.ClientURL(), srv
		// The daemon talks to its own server in process: no socket, no TLS.
		// The admin, whose password exists only in this process, sets up the
		// streams, buckets and the workers' consumer; the daemon then runs as
		// the worker, and the status page reads as the reader.
		connOpts = append(connOpts, nats.InProcessServer(srv))
		admin := natsConfig{User: users.Admin.User, Password: users.Admin.Password}
		anc, _, err := admin.connect(url, "jerichoci serve "+cfg.daemon.ID+" setup", log.Named("nats"), connOpts...)
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		setup, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = daemon.OpenQueue(setup, anc, cfg.queue)
		cancel()
		anc.Close()
		if err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		w, r := users.Roles[protocol.RoleWorker], users.Roles[protocol.RoleReader]
		ncfg = natsConfig{User: w.User, Password: w.Password}
		readerCfg = &natsConfig{User: r.User, Password: r.Password}
	}
	// The worker's replies (pulled jobs among them) come to an inbox no
	// client or reader may subscribe to (docs/PROTOCOL.md).
	connOpts = append(connOpts, nats.CustomInboxPrefix(protocol.WorkerInboxPrefix))
	nc, closed, err := ncfg.connect(url, "jerichoci serve "+cfg.daemon.ID, log.Named("nats"), connOpts...)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	q, err := daemon.OpenQueue(setup, nc, cfg.queue)
	cancel()
	if err != nil {
		nc.Close()
		return c.fail(exitUsage, "%v", err)
	}
	cl, err := cfg.exec.incusClient(c.env, log.Named("incus"))
	if err != nil {
		nc.Close()
		return c.fail(exitUsage, "%v", err)
	}
	defer cl.Close()
	setup, cancel = context.WithTimeout(ctx, 30*time.Second)
	err = checkGuestNetwork(setup, cl, cfg.exec.GuestNetwork)
	cancel()
	if err != nil {
		nc.Close()
		return c.fail(exitUsage, "%v", err)
	}
	warmSize := cfg.warm
	if warmSize < 0 {
		warmSize = cfg.daemon.Concurrency
	}
	guestWarnings(c.stderr, cfg.exec, cfg.daemon.Concurrency+warmSize, "/proc/sys/kernel/pid_max")
	be, insts := incus.NewBackend(cl), daemonInstances{incus.NewInstances(cl)}

	cfg.daemon.Fleet = q.Fleet
	// Instances are deleted after their job's result is published, in the
	// background; serve waits for those teardowns before it exits.
	teardowns := &executor.Teardowns{Log: log.Named("teardown")}
	warm := cfg.warm
	if warm < 0 {
		warm = cfg.daemon.Concurrency
	}
	warnPoolSpace(ctx, c.stderr, be, cfg.exec.executorConfig(), cfg.daemon.Concurrency, warm, log.Named("space"))
	// The warm pool: started instances ready for the next jobs.
	var pool *executor.Pool
	if warm != 0 {
		pc := cfg.exec.executorConfig()
		pc.Fleet = q.Fleet
		cfg.daemon.PoolOwner = daemon.PoolOwnerPrefix + cfg.daemon.ID + "/" + uuid.NewString()[:8]
		cfg.daemon.PoolMaxAge = executor.DefaultPoolMaxAge
		pool = &executor.Pool{Backend: be, Config: pc, Size: warm, Dir: filepath.Join(stateRoot, "pool"),
			Owner: cfg.daemon.PoolOwner, MaxAge: cfg.daemon.PoolMaxAge, Log: log.Named("pool"), PreExec: true}
	}
	daemonRunner := newRunner(c.env, cfg.exec, stateRoot, log)
	allowedSecrets := cfg.secretEnv
	daemonRunner.SecretEnvAllowed = func(name string) bool { return slices.Contains(allowedSecrets, name) }
	if !cfg.allowStagedBuilds {
		daemonRunner.Outputs = run.RefuseStagedBuilds{}
	}
	d := &daemon.Daemon{
		Config: cfg.daemon, Queue: q, Jobs: q.Jobs, Results: q.Results, Sources: q, Events: q, Catalog: cat,
		Records: q, DeadLetters: q, RecordLimit: int(min(protocol.MaxResultValue, q.MaxPayload())) - 16<<10,
		NewExecutor: func(owner string) run.JobExecutor {
			ec := cfg.exec.executorConfig()
			ec.Owner, ec.Fleet = owner, q.Fleet
			var host run.JobExecutor = run.RefuseHostJobs{}
			if cfg.allowHostJobs {
				x := hostExecutor(c.env, stateRoot, log.Named("hostlocal"))
				x.Isolate = isolation
				host = x
			}
			return run.JobRouter{Incus: &executor.RemoteLinuxVM{Backend: be, Config: ec, Log: log.Named("executor"), Teardowns: teardowns, Pool: pool, Store: hostNix(log)}, Host: host}
		},
		Instances: insts,
		Runner:    daemonRunner,
		Log:       log.Named("daemon"),
	}
	if cfg.httpListen != "" {
		incusReady := func(ctx context.Context) error { _, err := cl.Server(ctx); return err }
		g := metrics.Gauges{Workers: cfg.daemon.Concurrency, Busy: d.Busy, NATS: nc.IsConnected, IncusWaitLimits: cl.WaitLimits,
			Incus: func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				return incusReady(ctx) == nil
			}}
		if pool != nil {
			g.PoolReady = func() int { return pool.Stats().Ready }
		}
		m := metrics.New(g)
		d.Observer = m
		// The status page and JSON API: live logs come from NATS, read as
		// the reader on the embedded server (else on the daemon's connection).
		logsConn := nc
		if readerCfg != nil {
			rnc, _, err := readerCfg.connect(url, "jerichoci serve "+cfg.daemon.ID+" page", log.Named("nats"), nats.InProcessServer(natsServer))
			if err != nil {
				nc.Close()
				return c.fail(exitUsage, "%v", err)
			}
			defer rnc.Close()
			logsConn = rnc
		}
		logs, err := protocol.NewClient(logsConn)
		if err != nil {
			nc.Close()
			return c.fail(exitUsage, "%v", err)
		}
		ln, err := net.Listen("tcp", cfg.httpListen)
		if err != nil {
			nc.Close()
			return c.fail(exitUsage, "--http-listen %s: %v (another daemon there? pass --http-listen '' to disable)", cfg.httpListen, err)
		}
		health := m.Handler(
			metrics.Check{Name: "nats", Fn: q.Ready},
			metrics.Check{Name: "incus", Fn: incusReady},
		)
		status := web.New(web.Config{StateRoot: stateRoot, Logs: logs, Log: log.Named("web")})
		mux := http.NewServeMux()
		for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
			mux.Handle(p, health)
		}
		mux.Handle("/", status.Handler())
		// Every route checks Host, /metrics and the health checks too
		// (docs/SECURITY.md).
		hosts, err := web.NewHostCheck(cfg.httpListen, cfg.httpAllowedHosts)
		if err != nil {
			ln.Close()
			nc.Close()
			return c.fail(exitUsage, "--http-allowed-host: %v", err)
		}
		srv := &http.Server{Handler: hosts.Handler(mux), ReadHeaderTimeout: 10 * time.Second}
		srv.RegisterOnShutdown(status.Close) // live log streams end
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("status page, metrics and health", zap.String("url", "http://"+ln.Addr().String()+"/"))
	}
	cancelSub, err := q.SubscribeCancels(d, 30*time.Second)
	if err != nil {
		nc.Close()
		return c.fail(exitUsage, "%v", err)
	}
	giveUpSub, err := q.SubscribeGiveUps(d.GiveUp, log.Named("giveup"))
	if err != nil {
		nc.Close()
		return c.fail(exitUsage, "%v", err)
	}
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintf(c.stderr, "jerichoci serve: stopping: no more jobs taken; running jobs may finish within %s (signal again to cancel them)\n", cfg.daemon.DrainTimeout)
				continue
			}
			fmt.Fprintln(c.stderr, "jerichoci serve: cancelling running jobs and handing them back to the queue")
			d.Kill()
		}
	}()
	fmt.Fprintf(c.stderr, "jerichoci serve: %d workers on %s, state %s (daemon %s, fleet %s)\n", cfg.daemon.Concurrency,
		nc.ConnectedUrlRedacted(), stateRoot, cfg.daemon.ID, q.Fleet)

	poolDone := make(chan struct{})
	poolCtx, stopPool := context.WithCancel(context.Background())
	if pool != nil {
		go func() {
			defer close(poolDone)
			if err := pool.Prewarm(ctx, model.RolePikaciRunner.DefaultImageAlias()); err != nil {
				log.Warn("warm pool: prewarm", zap.Error(err))
			}
			pool.Run(poolCtx)
		}()
	} else {
		close(poolDone)
	}
	runErr := d.Run(ctx)
	stopPool() // deletes the idle instances
	<-poolDone
	wait, cancelWait := context.WithTimeout(context.Background(), cfg.exec.executorConfig().CleanupTimeout)
	if err := teardowns.Wait(wait); err != nil {
		st := teardowns.Stats()
		log.Warn("instance teardowns still running at exit; the reaper will delete them", zap.Int("pending", st.Pending))
	}
	cancelWait()
	_ = cancelSub.Unsubscribe()
	_ = giveUpSub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		log.Warn("flush NATS", zap.Error(err))
	}
	if err := nc.Drain(); err == nil {
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			nc.Close()
		}
	} else {
		nc.Close()
	}
	if runErr != nil {
		return c.fail(exitUsage, "%v", runErr)
	}
	return exitOK
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
