package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"jerichoci/executor/hostlocal"
	"jerichoci/internal/units"
	"jerichoci/model"
	"jerichoci/run/daemon"
	"jerichoci/web"
)

// serveConfig is everything `serve` takes: defaults, then the environment,
// then flags; Validate reports every problem at once.
type serveConfig struct {
	exec    execConfig
	nats    natsConfig
	queue   daemon.QueueConfig
	daemon  daemon.DaemonConfig
	catalog string
	// allowHostJobs lets host-local jobs (host_shell commands) run on the
	// worker itself; without it they fail with run.MsgHostJobsRefused.
	allowHostJobs bool
	// hostJobsUser is the unprivileged user a daemon running as root runs
	// host-local jobs as; hostJobsUserSet says the environment or a flag
	// named it.
	hostJobsUser    string
	hostJobsUserSet bool
	// hostJobsMaxProcesses is the RLIMIT_NPROC of host-local jobs run as
	// the host-jobs user; 0 sets none.
	hostJobsMaxProcesses int
	// allowStagedBuilds lets staged jobs' outputs be built from the job's
	// source with the host's Nix; without it their prepare nodes fail with
	// run.MsgStagedBuildsRefused.
	allowStagedBuilds bool
	// secretEnv lists the variables of this worker's environment that a
	// catalog job's secret_env may name; none by default.
	secretEnv []string
	// warm is the warm pool's size per image; -1 means the concurrency.
	warm int
	// warmSizing sizes the warm pool to demand (warmpool.go).
	warmSizing warmConfig
	// httpListen serves the status page, its JSON API, /metrics, /healthz
	// and /readyz; "" disables it.
	httpListen string
	// httpAllowedHosts are the names the status page answers to besides
	// the loopback names and the listen address (web.HostCheck).
	httpAllowedHosts []string
	// daemonFile is where serve publishes its state root and URL for the
	// client commands (daemonfile.go); "" publishes none.
	daemonFile string
	// natsWait is how long serve waits at start for NATS servers not yet
	// listening or a cluster still settling (servestartup.go).
	natsWait time.Duration
	// incusHealth is the periodic check of incusd (incushealth.go).
	incusHealth daemon.HealthConfig
	envErrs     []error // unparsable environment values
}

func defaultServeConfig() serveConfig {
	c := serveConfig{exec: defaultExecConfig(), nats: defaultNATSConfig(), queue: daemon.DefaultQueueConfig(), daemon: daemon.DefaultDaemonConfig(),
		warm: -1, warmSizing: defaultWarmConfig(), httpListen: "127.0.0.1:4280", hostJobsUser: hostlocal.DefaultUser,
		hostJobsMaxProcesses: hostlocal.DefaultMaxProcesses, natsWait: defaultNATSWait,
		incusHealth: daemon.DefaultHealthConfig()}
	c.exec.LogLevel = "info"
	return c
}

func (c *serveConfig) fromEnv(env func(string) (string, bool)) {
	if locs := daemonFileLocations(env, os.Geteuid()); len(locs) > 0 {
		c.daemonFile = locs[0]
	}
	c.exec.fromEnv(env)
	c.nats.fromEnv(env)
	if v, ok := env(envCatalog); ok && strings.TrimSpace(v) != "" {
		c.catalog = v
	}
	intVar := func(key string, dst *int) {
		if v, ok := env(key); ok && strings.TrimSpace(v) != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: expected an integer", key, v))
				return
			}
			*dst = n
		}
	}
	durVar := func(key string, dst *time.Duration) {
		if v, ok := env(key); ok && strings.TrimSpace(v) != "" {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: expected a duration such as 60s", key, v))
				return
			}
			*dst = d
		}
	}
	sizeVar := func(key string, dst *int64) {
		if v, ok := env(key); ok && strings.TrimSpace(v) != "" {
			n, err := units.ParseSize(strings.TrimSpace(v))
			if err != nil {
				c.envErrs = append(c.envErrs, fmt.Errorf("%s: %w", key, err))
				return
			}
			*dst = n
		}
	}
	if v, ok := env("JERICHOCI_FLEET"); ok && v != "" {
		c.queue.Fleet = v
	}
	durVar("JERICHOCI_HEARTBEAT", &c.daemon.Heartbeat)
	if v, ok := env("JERICHOCI_HOST_PATH_ROOT"); ok {
		c.daemon.HostPathRoot = v
	}
	boolVar := func(key string, dst *bool) {
		if v, ok := env(key); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: expected true or false", key, v))
			}
			*dst = b
		}
	}
	boolVar("JERICHOCI_ALLOW_HOST_JOBS", &c.allowHostJobs)
	boolVar("JERICHOCI_ALLOW_STAGED_BUILDS", &c.allowStagedBuilds)
	if v, ok := env("JERICHOCI_HOST_JOBS_USER"); ok && v != "" {
		c.hostJobsUser, c.hostJobsUserSet = v, true
	}
	intVar("JERICHOCI_HOST_JOBS_MAX_PROCESSES", &c.hostJobsMaxProcesses)
	sizeVar("JERICHOCI_MAX_SOURCE_BYTES", &c.daemon.SourceLimits.MaxBytes)
	intVar("JERICHOCI_MAX_SOURCE_ENTRIES", &c.daemon.SourceLimits.MaxEntries)
	sizeVar("JERICHOCI_SOURCE_CACHE_MAX_BYTES", &c.daemon.SourceCacheMaxBytes)
	durVar("JERICHOCI_SOURCE_CACHE_MAX_AGE", &c.daemon.SourceCacheMaxAge)
	durVar("JERICHOCI_KEEP_RESULTS", &c.queue.KeepResults)
	durVar("JERICHOCI_KEEP_UNRUN_RESULTS", &c.daemon.UnrunResultTTL)
	sizeVar("JERICHOCI_RESULTS_MAX_BYTES", &c.queue.ResultsMaxBytes)
	durVar("JERICHOCI_PRECANCEL_TTL", &c.daemon.PrecancelTTL)
	intVar("JERICHOCI_KEEP_RUNS", &c.daemon.KeepRuns)
	intVar("JERICHOCI_CONCURRENCY", &c.daemon.Concurrency)
	intVar("JERICHOCI_WARM", &c.warm)
	c.warmSizing.fromEnv(intVar)
	if v, ok := env("JERICHOCI_HTTP_LISTEN"); ok {
		c.httpListen = v
	}
	if v, ok := env("JERICHOCI_HTTP_ALLOWED_HOSTS"); ok {
		c.httpAllowedHosts = splitNames(v)
	}
	if v, ok := env("JERICHOCI_SECRET_ENV"); ok {
		c.secretEnv = splitNames(v)
	}
	intVar("JERICHOCI_MAX_DELIVER", &c.queue.MaxDeliver)
	intVar("JERICHOCI_MAX_ACK_PENDING", &c.queue.MaxAckPending)
	intVar("JERICHOCI_REPLICAS", &c.queue.Replicas)
	durVar("JERICHOCI_ACK_WAIT", &c.queue.AckWait)
	durVar("JERICHOCI_RETRY_DELAY", &c.daemon.RetryDelay)
	durVar("JERICHOCI_DRAIN_TIMEOUT", &c.daemon.DrainTimeout)
	durVar("JERICHOCI_REAP_INTERVAL", &c.daemon.ReapEvery)
	durVar("JERICHOCI_NATS_WAIT", &c.natsWait)
	c.incusHealthFromEnv(intVar, durVar)
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	c.exec.flags(fs)
	c.nats.flags(fs, true)
	fs.StringVar(&c.catalog, "catalog", c.catalog, catalogFlagHelp)
	fs.IntVar(&c.daemon.Concurrency, "concurrency", c.daemon.Concurrency, "`N` workers, each running one job at a time (env JERICHOCI_CONCURRENCY)")
	fs.StringVar(&c.httpListen, "http-listen", c.httpListen, "`HOST:PORT` serving the status page and JSON API (/, /runs/ID, /api/runs), /metrics (Prometheus), /healthz and /readyz; empty disables it (env JERICHOCI_HTTP_LISTEN)")
	listFlag(fs, "http-allowed-host", "`NAME` (host name or IP, no port) the status page, API and /metrics answer to besides localhost, the loopback addresses and --http-listen's host; other Host headers get 421 (repeatable, replacing JERICHOCI_HTTP_ALLOWED_HOSTS, a comma-separated list)", &c.httpAllowedHosts)
	fs.IntVar(&c.warm, "warm", c.warm, "keep `N` instances per image created and started for the next jobs (env JERICHOCI_WARM; -1: the concurrency; 0: no warm pool)")
	c.warmSizing.flags(fs)
	fs.DurationVar(&c.queue.AckWait, "ack-wait", c.queue.AckWait, "consumer ack wait; running jobs send InProgress every third of it (env JERICHOCI_ACK_WAIT)")
	fs.IntVar(&c.queue.MaxDeliver, "max-deliver", c.queue.MaxDeliver, "deliveries of a job before it fails for good (env JERICHOCI_MAX_DELIVER)")
	fs.IntVar(&c.queue.MaxAckPending, "max-ack-pending", c.queue.MaxAckPending, "jobs in flight across the fleet; at least every worker slot (env JERICHOCI_MAX_ACK_PENDING)")
	fs.IntVar(&c.queue.Replicas, "replicas", c.queue.Replicas, "JetStream replicas (`N`, 1 to 5) of the work stream and its consumer, the events and dead-letter streams, the buckets and object stores; more than 1 needs --nats-url naming a NATS cluster (env JERICHOCI_REPLICAS)")
	fs.DurationVar(&c.daemon.RetryDelay, "retry-delay", c.daemon.RetryDelay, "delay before an infrastructure failure is retried, doubled per delivery (env JERICHOCI_RETRY_DELAY)")
	fs.DurationVar(&c.daemon.DrainTimeout, "drain-timeout", c.daemon.DrainTimeout, "how long the first signal lets running jobs finish (env JERICHOCI_DRAIN_TIMEOUT)")
	fs.DurationVar(&c.daemon.ReapEvery, "reap-interval", c.daemon.ReapEvery, "period of the orphan instance reaper (env JERICHOCI_REAP_INTERVAL)")
	fs.DurationVar(&c.natsWait, "nats-wait", c.natsWait, "how long serve waits at start, retrying with backoff, for NATS servers not yet listening or a cluster still electing its leader or placing the streams (said in the log and on /readyz); bad credentials or configuration fail at once; 0: no retry (env JERICHOCI_NATS_WAIT)")
	c.incusHealthFlags(fs)
	fs.StringVar(&c.queue.Fleet, "fleet", c.queue.Fleet, "`NAME` of the fleet (the daemons sharing this work stream) when the stream has none yet; else it must be the stream's (env JERICHOCI_FLEET)")
	fs.DurationVar(&c.daemon.Heartbeat, "heartbeat", c.daemon.Heartbeat, "how often a running job refreshes its claim and sends InProgress; a worker silent for 3 of them is dead (default 2s, or ack-wait/3 when shorter; env JERICHOCI_HEARTBEAT)")
	fs.BoolVar(&c.allowHostJobs, "allow-host-jobs", c.allowHostJobs, "run host-local jobs (host_shell commands of the catalog) on this worker itself, as the original does; without it they fail with a message saying so (env JERICHOCI_ALLOW_HOST_JOBS)")
	fs.Func("host-jobs-user", "`NAME` of the unprivileged user host-local jobs run as when serve runs as root, with a scrubbed environment and no access to the state root but their own cache (default "+hostlocal.DefaultUser+", which scripts/hostjobs-up creates; env JERICHOCI_HOST_JOBS_USER)", func(v string) error {
		if v == "" {
			return errors.New("expected a user name")
		}
		c.hostJobsUser, c.hostJobsUserSet = v, true
		return nil
	})
	fs.IntVar(&c.hostJobsMaxProcesses, "host-jobs-max-processes", c.hostJobsMaxProcesses, "`N` processes and threads the host-jobs user may have while one of its host-local jobs runs (RLIMIT_NPROC of the command and its nix, counted host-wide), so a fork bomb cannot take the host's PIDs; 0: no limit (env JERICHOCI_HOST_JOBS_MAX_PROCESSES). Jobs of one host-jobs user run one at a time on the host, across daemons, and every process of the user is killed when a job ends")
	fs.BoolVar(&c.allowStagedBuilds, "allow-staged-builds", c.allowStagedBuilds, "build staged jobs' outputs from the job's source with this host's nix, as the original does: the source's flake.nix is evaluated (as an unprivileged user when serve runs as root) and built by the host's nix-daemon in its sandbox as build users; serve refuses to start when that Nix builds unsandboxed or as root, or its daemon does not answer (scripts/nix-up sets it up); without the flag those prepare nodes fail with a message saying so (env JERICHOCI_ALLOW_STAGED_BUILDS)")
	listFlag(fs, "secret-env", "`NAME[,NAME…]` of this worker's environment variables that a catalog job's secret_env may name: passed into its guest, masked in its logs (repeatable, replacing JERICHOCI_SECRET_ENV); a job naming another fails unrun", &c.secretEnv)
	fs.StringVar(&c.daemon.HostPathRoot, "host-path-root", c.daemon.HostPathRoot, "accept host_path sources that resolve (symlinks included) under `DIR`; without it they are refused (env JERICHOCI_HOST_PATH_ROOT)")
	fs.Var(sizeFlag{&c.daemon.SourceLimits.MaxBytes}, "max-source-bytes", "largest uploaded source, packed and unpacked, such as 4GiB (env JERICHOCI_MAX_SOURCE_BYTES)")
	fs.IntVar(&c.daemon.SourceLimits.MaxEntries, "max-source-entries", c.daemon.SourceLimits.MaxEntries, "most entries in an uploaded source (env JERICHOCI_MAX_SOURCE_ENTRIES)")
	fs.Var(sizeFlag{&c.daemon.SourceCacheMaxBytes}, "source-cache-max-bytes", "unpacked-source cache size kept, least recently used out first; 0: no bound (env JERICHOCI_SOURCE_CACHE_MAX_BYTES)")
	fs.DurationVar(&c.daemon.SourceCacheMaxAge, "source-cache-max-age", c.daemon.SourceCacheMaxAge, "unpacked sources unused this long are removed; 0: no bound (env JERICHOCI_SOURCE_CACHE_MAX_AGE)")
	fs.DurationVar(&c.queue.KeepResults, "keep-results", c.queue.KeepResults, "how long final records and claims are kept in NATS (env JERICHOCI_KEEP_RESULTS)")
	fs.DurationVar(&c.daemon.UnrunResultTTL, "keep-unrun-results", c.daemon.UnrunResultTTL, "how long the final record of a job refused before it ran (spec, target or source refused) is kept in NATS; at most --keep-results (env JERICHOCI_KEEP_UNRUN_RESULTS)")
	fs.Var(sizeFlag{&c.queue.ResultsMaxBytes}, "results-max-bytes", "size cap of the results bucket, such as 1GiB; at the cap the oldest records are dropped (env JERICHOCI_RESULTS_MAX_BYTES)")
	fs.DurationVar(&c.daemon.PrecancelTTL, "precancel-ttl", c.daemon.PrecancelTTL, "how long a cancel for a job no worker has seen is kept (env JERICHOCI_PRECANCEL_TTL)")
	fs.StringVar(&c.daemonFile, "daemon-file", c.daemonFile, "`FILE` where serve publishes its state root and NATS URL while it runs, so that enqueue, cancel and logs --follow find its credentials from any directory; empty publishes none (env "+envDaemonFile+"; default /run/jerichoci/daemon.json for root, else $XDG_RUNTIME_DIR or ~/.local/state, under jerichoci/daemon.json)")
	fs.IntVar(&c.daemon.KeepRuns, "keep-runs", c.daemon.KeepRuns, "keep the newest `N` run directories, as 'runs gc'; 0 keeps all (env JERICHOCI_KEEP_RUNS)")
}

var unsafeIDChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// finish derives the settings that follow from others.
func (c *serveConfig) finish() {
	c.daemon.Delivery = c.queue.Delivery
	c.daemon.ID = strings.Trim(unsafeIDChars.ReplaceAllString(c.exec.Owner, "-"), "-")
	if c.daemon.MaxRetryDelay < c.daemon.RetryDelay {
		c.daemon.MaxRetryDelay = c.daemon.RetryDelay
	}
}

// Validate reports every problem at once.
func (c serveConfig) Validate() error {
	errs := append([]error{}, c.envErrs...)
	// --replicas is reported here, naming the flag, not again by the queue.
	queue := c.queue
	switch {
	case c.queue.Replicas < 1 || c.queue.Replicas > 5:
		errs = append(errs, fmt.Errorf("--replicas %d (env JERICHOCI_REPLICAS): expected 1 to 5", c.queue.Replicas))
		queue.Replicas = 1
	case c.queue.Replicas > 1 && c.nats.URL == "":
		errs = append(errs, fmt.Errorf("--replicas %d: the embedded NATS server is a single server, which keeps 1 replica; more need --nats-url naming a NATS cluster of at least %d servers", c.queue.Replicas, c.queue.Replicas))
	}
	if c.exec.Project == "" {
		errs = append(errs, errors.New("runtime spec field `project` must be non-empty (PIKACI_REMOTE_LINUX_VM_INCUS_PROJECT)"))
	}
	if strings.TrimSpace(c.exec.Profile) == "" {
		errs = append(errs, errors.New("runtime spec field `incus.profile` must be non-empty ("+envProfile+")"))
	}
	errs = append(errs, c.exec.Validate(), c.nats.Validate(true), queue.Validate(), c.daemon.Validate())
	if c.httpListen != "" {
		if _, _, err := net.SplitHostPort(c.httpListen); err != nil {
			errs = append(errs, fmt.Errorf("--http-listen %q (env JERICHOCI_HTTP_LISTEN): expected HOST:PORT, or empty to disable", c.httpListen))
		}
	}
	errs = append(errs, c.incusHealthErrs()...)
	if c.natsWait < 0 {
		errs = append(errs, fmt.Errorf("--nats-wait %s (env JERICHOCI_NATS_WAIT): expected a duration of 0 or more", c.natsWait))
	}
	if c.daemon.UnrunResultTTL > c.queue.KeepResults {
		errs = append(errs, fmt.Errorf("--keep-unrun-results %s (env JERICHOCI_KEEP_UNRUN_RESULTS): expected at most --keep-results %s", c.daemon.UnrunResultTTL, c.queue.KeepResults))
	}
	for _, name := range c.httpAllowedHosts {
		if _, err := web.AllowedHostName(name); err != nil {
			errs = append(errs, fmt.Errorf("--http-allowed-host (env JERICHOCI_HTTP_ALLOWED_HOSTS): %w", err))
		}
	}
	for _, name := range c.secretEnv {
		if msg := model.SecretEnvProblem(name); msg != "" {
			errs = append(errs, fmt.Errorf("--secret-env %q (env JERICHOCI_SECRET_ENV): %s", name, msg))
		}
	}
	if c.hostJobsMaxProcesses < 0 {
		errs = append(errs, fmt.Errorf("--host-jobs-max-processes %d (env JERICHOCI_HOST_JOBS_MAX_PROCESSES): expected a number >= 0 (0: no limit)", c.hostJobsMaxProcesses))
	}
	if c.warm < -1 {
		errs = append(errs, fmt.Errorf("warm pool size %d: expected a number >= 0 (or -1 for the concurrency)", c.warm))
	}
	errs = append(errs, c.warmSizing.validate()...)
	if c.queue.MaxAckPending < c.daemon.Concurrency {
		errs = append(errs, fmt.Errorf("max ack pending %d: must be at least the concurrency %d", c.queue.MaxAckPending, c.daemon.Concurrency))
	}
	return errors.Join(errs...)
}

// listFlag registers a repeatable flag of comma-separated names that
// appends to *dst; the first use replaces what *dst held (the
// environment's list).
func listFlag(fs *flag.FlagSet, name, usage string, dst *[]string) {
	fromFlags := false
	fs.Func(name, usage, func(v string) error {
		if !fromFlags {
			*dst, fromFlags = nil, true
		}
		*dst = append(*dst, splitNames(v)...)
		return nil
	})
}

// splitNames splits a comma-separated list, dropping blanks.
func splitNames(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
