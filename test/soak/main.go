// Command soak is the daemon's soak benchmark (`make soak`, scripts/soak):
// one external nats-server with JetStream, three `jerichoci serve` daemons
// on it, SOAK_JOBS trivial jobs, and a `kill -9` of a random daemon every
// SOAK_KILL_EVERY (restarted SOAK_RESTART_AFTER later, same state root and
// owner) until every job has its final record or SOAK_TIMEOUT is up. It
// then counts what the protocol promises (docs/PROTOCOL.md) and prints it:
// final records, duplicates, lost jobs, infrastructure failures, leaked
// Incus instances of its fleet, each daemon's VmRSS, kills and throughput.
// It exits 1 when a job was lost or ran to two final records, or when an
// instance was leaked; 130 when interrupted. Everything it starts
// (daemons, nats-server, temp dirs, its fleet's instances) is gone when it
// exits, also after Ctrl-C.
//
// Settings (environment): SOAK_JOBS (500), SOAK_KILL_EVERY (8s; 0: no
// kills), SOAK_RESTART_AFTER (2s), SOAK_TIMEOUT (40m, the jobs phase;
// stopping takes at most about 3 minutes more), SOAK_DAEMONS (3),
// SOAK_CONCURRENCY (2), SOAK_REAP_INTERVAL (5s), SOAK_SEED (the kill
// order; default random), SOAK_LOG_DIR (copy the daemons' logs there),
// SOAK_BIN (the folder with jerichoci and nats-server; default ./bin).
// It is a benchmark, not a test: it needs incusd with the runner image
// (scripts/incus-up) and takes minutes. It holds the shared incusd lock
// (internal/testlock) for its whole run, as the test packages that use
// incusd do, so the test that kills incusd never runs under it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/internal/testlock"
	"jerichoci/run/protocol"
)

const (
	target       = "soak"
	incusProject = "pika-managed-agents"
	configFleet  = "user.jerichoci.fleet" // executor.ConfigFleet
	// a daemon's stop: SIGTERM drains within --drain-timeout, a second
	// SIGTERM cancels, then SIGKILL.
	drainTimeout = 30 * time.Second
)

// catalog is the daemons' catalog: one target with one trivial job.
const catalog = `{"schema_version":1,"targets":[{"id":"soak","description":"trivial","jobs":[{"id":"hello","description":"echo","timeout_secs":60,"command":{"kind":"shell","command":"echo hello"},"runtime":{"kind":"incus","incus":{"guest_role":"pikaci-runner"}}}]}]}`

type config struct {
	jobs, daemons, concurrency int
	killEvery, restartAfter    time.Duration
	timeout, reapInterval      time.Duration
	seed                       uint64
	logDir, bin                string
}

func loadConfig() (config, error) {
	c := config{jobs: 500, daemons: 3, concurrency: 2, killEvery: 8 * time.Second, restartAfter: 2 * time.Second,
		timeout: 40 * time.Minute, reapInterval: 5 * time.Second, seed: rand.Uint64(), bin: "bin"}
	var errs []error
	num := func(key string, dst *int, lo int) {
		if v := strings.TrimSpace(os.Getenv(key)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo {
				errs = append(errs, fmt.Errorf("%s=%q: expected an integer >= %d", key, v, lo))
				return
			}
			*dst = n
		}
	}
	dur := func(key string, dst *time.Duration) {
		if v := strings.TrimSpace(os.Getenv(key)); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: expected a duration such as 8s", key, v))
				return
			}
			*dst = d
		}
	}
	num("SOAK_JOBS", &c.jobs, 1)
	num("SOAK_DAEMONS", &c.daemons, 1)
	num("SOAK_CONCURRENCY", &c.concurrency, 1)
	dur("SOAK_KILL_EVERY", &c.killEvery)
	dur("SOAK_RESTART_AFTER", &c.restartAfter)
	dur("SOAK_TIMEOUT", &c.timeout)
	dur("SOAK_REAP_INTERVAL", &c.reapInterval)
	if v := strings.TrimSpace(os.Getenv("SOAK_SEED")); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("SOAK_SEED=%q: expected an unsigned integer", v))
		}
		c.seed = n
	}
	c.logDir = os.Getenv("SOAK_LOG_DIR")
	if v := os.Getenv("SOAK_BIN"); v != "" {
		c.bin = v
	}
	if c.timeout == 0 || c.reapInterval == 0 {
		errs = append(errs, errors.New("SOAK_TIMEOUT and SOAK_REAP_INTERVAL must be positive"))
	}
	return c, errors.Join(errs...)
}

func (c config) killsText() string {
	if c.killEvery <= 0 {
		return "no kills"
	}
	return fmt.Sprintf("kill -9 of a random daemon every %s, restarted %s later", c.killEvery, c.restartAfter)
}

func main() { os.Exit(run()) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// soak is one run: what it started, and what it saw.
type soak struct {
	cfg     config
	tmp     string
	srcDir  string // --host-path-root
	repo    string // the jobs' host_path source, under srcDir
	catalog string
	natsURL string
	nats    *exec.Cmd
	natsEnd chan struct{}
	daemons []*daemon
	fleet   string

	mu      sync.Mutex
	results map[string]result // job id -> its final record, from the KV watcher
	lastAt  time.Time         // when the last of our final records came
	ids     map[string]bool   // the jobs submitted
	kills   int
	errs    []string // restart failures and the like
}

// result is the part of a final record the soak reads.
type result struct {
	RunID   string  `json:"run_id"`
	Status  string  `json:"status"`
	Message *string `json:"message"`
}

func (r result) message() string {
	if r.Message == nil {
		return ""
	}
	return *r.Message
}

func run() int {
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 2
	}
	for _, b := range []string{"jerichoci", "nats-server"} {
		if _, err := os.Stat(filepath.Join(cfg.bin, b)); err != nil {
			fmt.Fprintf(os.Stderr, "soak: %v (make build bin/nats-server)\n", err)
			return 2
		}
	}
	if _, err := exec.LookPath("incus"); err != nil {
		fmt.Fprintf(os.Stderr, "soak: the incus client is needed to list the fleet's instances: %v\n", err)
		return 2
	}
	// The first SIGINT/SIGTERM ends the soak early; the children run in
	// their own process groups, so a Ctrl-C reaches only us and we stop
	// them in order.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Hold the shared incusd lock for the whole run, as the test packages
	// that use incusd do: test/incusfault, which kills incusd, waits for it
	// (and the soak waits while that test holds it exclusively).
	lock, err := incusdLock(ctx, cfg.timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		if ctx.Err() != nil {
			return 130
		}
		return 2
	}
	defer lock.Release()

	s := &soak{cfg: cfg, results: map[string]result{}, ids: map[string]bool{}}
	if s.tmp, err = os.MkdirTemp("", "jerichoci-soak-"); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 2
	}
	code := s.main(ctx)
	s.cleanup()
	if ctx.Err() != nil {
		code = 130
	}
	return code
}

// incusdLock takes the shared lock on testlock.Path(), waiting (up to
// bound, or until ctx ends) while an incusd fault test holds it.
func incusdLock(ctx context.Context, bound time.Duration) (*testlock.Lock, error) {
	l, err := testlock.Acquire(testlock.Path(), testlock.Shared, 0)
	if err == nil || !errors.Is(err, testlock.ErrTimeout) {
		return l, err
	}
	logf("waiting for the shared incusd lock %s: %v", testlock.Path(), err)
	deadline := time.Now().Add(bound)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if l, err = testlock.Acquire(testlock.Path(), testlock.Shared, time.Second); err == nil || !errors.Is(err, testlock.ErrTimeout) {
			return l, err
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted while waiting for the incusd lock: %w", err)
	}
	return nil, err
}

func (s *soak) main(ctx context.Context) int {
	cfg := s.cfg
	started := time.Now()
	deadline := started.Add(cfg.timeout)
	logf("%d jobs, %d daemons x %d workers, %s, bound %s, seed %d, temp %s",
		cfg.jobs, cfg.daemons, cfg.concurrency, cfg.killsText(), cfg.timeout, cfg.seed, s.tmp)
	if err := s.setupFiles(); err != nil {
		logf("setup: %v", err)
		return 2
	}
	if err := s.startNATS(); err != nil {
		logf("nats-server: %v", err)
		return 2
	}
	nc, err := nats.Connect(s.natsURL, nats.Name("jerichoci soak"), nats.MaxReconnects(-1))
	if err != nil {
		logf("connect %s: %v", s.natsURL, err)
		return 2
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		logf("jetstream: %v", err)
		return 2
	}

	tag := strings.ReplaceAll(uuid.NewString(), "-", "")[:6]
	for i := range cfg.daemons {
		d := &daemon{name: fmt.Sprintf("d%d", i+1), owner: fmt.Sprintf("soak-%s-d%d", tag, i+1),
			stateRoot: filepath.Join(s.tmp, fmt.Sprintf("d%d", i+1))}
		d.logPath = filepath.Join(s.tmp, "logs", d.name+".log")
		s.daemons = append(s.daemons, d)
		// One at a time: the first creates the streams, buckets and fleet.
		if err := d.start(ctx, s); err != nil {
			logf("start daemon %s: %v", d.name, err)
			return 2
		}
	}
	fleetKV, err := js.KeyValue(ctx, protocol.BucketFleet)
	if err == nil {
		var e jetstream.KeyValueEntry
		if e, err = fleetKV.Get(ctx, protocol.FleetKey); err == nil {
			s.fleet = string(e.Value())
		}
	}
	if err != nil || s.fleet == "" {
		logf("read the fleet id from %s: %v", protocol.BucketFleet, err)
		return 2
	}
	startRSS := s.sampleRSS(ctx)
	logf("nats-server %s, fleet %s, daemons %s", s.natsURL, s.fleet, s.daemonList())

	resultsKV, err := js.KeyValue(ctx, protocol.BucketResults)
	if err != nil {
		logf("results bucket: %v", err)
		return 2
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := s.watchResults(watchCtx, resultsKV); err != nil {
		logf("watch %s: %v", protocol.BucketResults, err)
		return 2
	}

	// Publish every job at once: the fleet pulls them at its own pace.
	pubStart := time.Now()
	for i := range cfg.jobs {
		id := uuid.NewString()
		spec, _ := json.Marshal(map[string]any{"schema_version": 1, "job_id": id, "target": target,
			"source": map[string]string{"kind": "host_path", "path": s.repo}, "requester": "soak"})
		msg := &nats.Msg{Subject: protocol.JobSubject(target), Data: spec, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := js.PublishMsg(pctx, msg)
		cancel()
		if err != nil {
			logf("publish job %d of %d: %v", i+1, cfg.jobs, err)
			return 2
		}
		s.mu.Lock()
		s.ids[id] = true
		s.mu.Unlock()
	}
	logf("published %d jobs in %s", cfg.jobs, time.Since(pubStart).Round(time.Millisecond))

	// Kill and restart daemons until every job is final or time is up;
	// sample the RSS when half the jobs are final.
	chaosStop, chaosDone := make(chan struct{}), make(chan struct{})
	go s.chaos(ctx, chaosStop, chaosDone)
	var midRSS []rssSample
	midPending := true
	half := (cfg.jobs + 1) / 2
	progress := time.Now()
	timedOut := false
	tick := time.NewTicker(500 * time.Millisecond)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		done := s.finalCount()
		if midPending && done >= half {
			// A daemon being restarted is sampled once it is back.
			if all, samples := s.trySampleRSS(); all {
				midRSS, midPending = samples, false
				logf("half the jobs are final (%d): RSS %s", done, rssLine(midRSS))
			}
		}
		if done >= cfg.jobs && !midPending {
			break
		}
		if time.Now().After(deadline) {
			timedOut = true
			logf("SOAK_TIMEOUT %s is up with %d of %d jobs final", cfg.timeout, done, cfg.jobs)
			break
		}
		if time.Since(progress) >= 30*time.Second {
			progress = time.Now()
			s.mu.Lock()
			kills := s.kills
			s.mu.Unlock()
			logf("%d/%d final, %d kills, %s", done, cfg.jobs, kills, time.Since(pubStart).Round(time.Second))
		}
	}
	tick.Stop()
	close(chaosStop)
	<-chaosDone
	s.mu.Lock()
	lastAt, kills := s.lastAt, s.kills
	s.mu.Unlock()
	if ctx.Err() != nil {
		logf("interrupted: stopping everything (%d of %d jobs final, %d kills)", s.finalCount(), cfg.jobs, kills)
		return 130
	}

	wait := cfg.reapInterval + 10*time.Second
	logf("all jobs final or time up; no more kills; waiting %s (one reap interval plus 10s)", wait)
	select {
	case <-ctx.Done():
		return 130
	case <-time.After(wait):
	}
	if midPending {
		_, midRSS = s.trySampleRSS()
	}
	endRSS := s.sampleRSS(ctx)
	// Instances are deleted after their job's result, in the background:
	// give the last teardowns a bounded while before calling one a leak.
	leaked, listErr := s.fleetInstances()
	for deadline := time.Now().Add(time.Minute); listErr == nil && len(leaked) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		leaked, listErr = s.fleetInstances()
	}
	if listErr != nil {
		s.mu.Lock()
		s.errs = append(s.errs, "list instances: "+listErr.Error())
		s.mu.Unlock()
	}
	stopWatch()
	logf("stopping the daemons (SIGTERM)")
	s.stopDaemons(false)

	rep := s.count(ctx, js, resultsKV)
	rep.kills, rep.leaked = kills, leaked
	rep.start, rep.mid, rep.end = startRSS, midRSS, endRSS
	rep.timedOut = timedOut
	rep.elapsed = time.Since(started)
	if !lastAt.IsZero() {
		rep.span = lastAt.Sub(pubStart)
	}
	s.mu.Lock()
	rep.errs = append(rep.errs, s.errs...)
	s.mu.Unlock()
	return s.print(rep)
}

func (s *soak) setupFiles() error {
	s.srcDir = filepath.Join(s.tmp, "src")
	s.repo = filepath.Join(s.srcDir, "repo")
	for _, d := range []string{s.repo, filepath.Join(s.tmp, "logs"), filepath.Join(s.tmp, "nats")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(s.repo, "README"), []byte("jerichoci soak source\n"), 0o644); err != nil {
		return err
	}
	s.catalog = filepath.Join(s.tmp, "catalog.json")
	return os.WriteFile(s.catalog, []byte(catalog), 0o644)
}

// children run in their own process group (a Ctrl-C reaches only the
// soak, which stops them in order) and die with the soak.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *soak) startNATS() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(s.tmp, "logs", "nats-server.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.cfg.bin, "nats-server"), "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port),
		"-sd", filepath.Join(s.tmp, "nats"))
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = logFile, logFile, childAttrs()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	s.nats, s.natsEnd = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(s.natsEnd) }()
	s.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	for range 100 {
		if nc, err := nats.Connect(s.natsURL); err == nil {
			nc.Close()
			return nil
		}
		select {
		case <-s.natsEnd:
			return fmt.Errorf("exited at start: %s", tailFile(filepath.Join(s.tmp, "logs", "nats-server.log"), 10))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("not up on %s after 10s", s.natsURL)
}

// daemon is one `jerichoci serve` slot: its state root and owner stay,
// its process changes at every restart.
type daemon struct {
	name, owner, stateRoot, logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	up      bool
	since   time.Time // the current process's start
	starts  int
	exitErr error
}

func (s *soak) daemonEnv(d *daemon) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "JERICHOCI_") || strings.HasPrefix(kv, "PIKACI_STATE_ROOT=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "JERICHOCI_OWNER="+d.owner, "JERICHOCI_NATS_URL="+s.natsURL)
}

// start runs the daemon and waits until it pulls ("workers on nats://").
func (d *daemon) start(ctx context.Context, s *soak) error {
	if err := os.MkdirAll(d.stateRoot, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	st, _ := f.Stat()
	offset := st.Size()
	d.mu.Lock()
	d.starts++
	fmt.Fprintf(f, "=== soak: start %d of %s at %s\n", d.starts, d.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(s.cfg.bin, "jerichoci"), "serve",
		"--state-root", d.stateRoot, "--concurrency", strconv.Itoa(s.cfg.concurrency), "--catalog", s.catalog,
		"--host-path-root", s.srcDir, "--reap-interval", s.cfg.reapInterval.String(),
		"--keep-runs", "0", "--drain-timeout", drainTimeout.String(), "--log-level", "info",
		"--http-listen", "") // three daemons on one host: no shared metrics port
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = s.daemonEnv(d), f, f, childAttrs()
	if err := cmd.Start(); err != nil {
		d.mu.Unlock()
		f.Close()
		return err
	}
	done := make(chan struct{})
	d.cmd, d.done, d.since, d.exitErr = cmd, done, time.Now(), nil
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		d.mu.Lock()
		if d.cmd == cmd {
			d.up, d.exitErr = false, err
		}
		d.mu.Unlock()
		close(done)
	}()
	bound := time.Now().Add(60 * time.Second)
	for {
		if logHas(d.logPath, offset, "workers on nats://") {
			d.mu.Lock()
			d.up = d.cmd == cmd
			d.mu.Unlock()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("exited at start (%v): %s", cmd.ProcessState, tailFile(d.logPath, 10))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(bound) {
			return fmt.Errorf("not pulling after 60s: %s", tailFile(d.logPath, 10))
		}
	}
}

// kill9 kills the current process outright and waits for it.
func (d *daemon) kill9() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.up = false
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// process is the current process if it is up.
func (d *daemon) process() (pid int, since time.Time, starts int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.up || d.cmd == nil {
		return 0, time.Time{}, d.starts, false
	}
	return d.cmd.Process.Pid, d.since, d.starts, true
}

// stop sends SIGTERM (twice when hurry: cancel the running jobs, delete
// their instances), then SIGTERM again and SIGKILL if it takes too long.
func (d *daemon) stop(hurry bool) {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	first := drainTimeout + 15*time.Second
	if hurry {
		time.Sleep(500 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		first = 30 * time.Second
	}
	select {
	case <-done:
		return
	case <-time.After(first):
	}
	logf("daemon %s (pid %d) still running: SIGTERM again", d.name, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return
	case <-time.After(30 * time.Second):
	}
	logf("daemon %s (pid %d) still running: SIGKILL", d.name, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (s *soak) stopDaemons(hurry bool) {
	var wg sync.WaitGroup
	for _, d := range s.daemons {
		wg.Add(1)
		go func() { defer wg.Done(); d.stop(hurry) }()
	}
	wg.Wait()
}

func (s *soak) daemonList() string {
	var parts []string
	for _, d := range s.daemons {
		pid, _, _, _ := d.process()
		parts = append(parts, fmt.Sprintf("%s (owner %s, pid %d)", d.name, d.owner, pid))
	}
	return strings.Join(parts, ", ")
}

// chaos kills a random daemon every killEvery and restarts it
// restartAfter later, until stop is closed (a restart under way is
// finished first) or ctx ends (no restart then).
func (s *soak) chaos(ctx context.Context, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if s.cfg.killEvery <= 0 {
		return
	}
	rng := rand.New(rand.NewPCG(s.cfg.seed, 0x50a4))
	next := time.Now().Add(s.cfg.killEvery)
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(s.cfg.killEvery)
		if n := time.Now(); next.Before(n) {
			next = n.Add(s.cfg.killEvery / 2) // a slow restart: skip ahead, not a burst of kills
		}
		d := s.daemons[rng.IntN(len(s.daemons))]
		pid, _, _, ok := d.process()
		if !ok {
			continue
		}
		d.kill9()
		s.mu.Lock()
		s.kills++
		s.mu.Unlock()
		appendLog(d.logPath, fmt.Sprintf("=== soak: kill -9 pid %d of %s at %s\n", pid, d.name, time.Now().Format(time.RFC3339Nano)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.restartAfter):
		}
		var err error
		for try := 0; try < 3; try++ {
			if err = d.start(ctx, s); err == nil || ctx.Err() != nil {
				break
			}
			logf("restart daemon %s: %v; again", d.name, err)
		}
		if err != nil && ctx.Err() == nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Sprintf("restart daemon %s: %v", d.name, err))
			s.mu.Unlock()
		}
	}
}

// watchResults follows jerichoci-results: every key is a final record.
func (s *soak) watchResults(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				var r result
				if err := json.Unmarshal(e.Value(), &r); err != nil {
					r = result{Status: "undecodable: " + err.Error()}
				}
				s.mu.Lock()
				if _, seen := s.results[e.Key()]; !seen && s.ids[e.Key()] {
					s.lastAt = time.Now()
				}
				s.results[e.Key()] = r
				s.mu.Unlock()
			}
		}
	}()
	return nil
}

// finalCount is the number of submitted jobs with a final record.
func (s *soak) finalCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id := range s.ids {
		if _, ok := s.results[id]; ok {
			n++
		}
	}
	return n
}

// rssSample is one daemon's VmRSS.
type rssSample struct {
	daemon string
	pid    int
	bytes  int64
	age    time.Duration // of the process
	starts int           // 1: the first process; more: restarted
	err    error
}

// trySampleRSS samples every daemon that is up; all is false when one is
// down (being restarted).
func (s *soak) trySampleRSS() (all bool, out []rssSample) {
	all = true
	for _, d := range s.daemons {
		pid, since, starts, ok := d.process()
		if !ok {
			all = false
			out = append(out, rssSample{daemon: d.name, starts: starts, err: errors.New("down")})
			continue
		}
		b, err := vmRSS(pid)
		out = append(out, rssSample{daemon: d.name, pid: pid, bytes: b, age: time.Since(since), starts: starts, err: err})
	}
	return all, out
}

// sampleRSS waits (up to 30s) until every daemon is up, then samples.
func (s *soak) sampleRSS(ctx context.Context) []rssSample {
	bound := time.Now().Add(30 * time.Second)
	for {
		all, out := s.trySampleRSS()
		if all || time.Now().After(bound) || ctx.Err() != nil {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func rssLine(ss []rssSample) string {
	var parts []string
	for _, r := range ss {
		if r.err != nil {
			parts = append(parts, fmt.Sprintf("%s %v", r.daemon, r.err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s", r.daemon, mib(r.bytes)))
	}
	return strings.Join(parts, ", ")
}

// incusInstance is what the soak reads of `incus list --format json`.
type incusInstance struct {
	Name   string            `json:"name"`
	Status string            `json:"status"`
	Config map[string]string `json:"config"`
}

// fleetInstances lists the instances of this soak's fleet.
func (s *soak) fleetInstances() ([]incusInstance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "incus", "list", "--project", incusProject, "--format", "json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("incus list --project %s: %w", incusProject, err)
	}
	var all []incusInstance
	if err := json.Unmarshal(out, &all); err != nil {
		return nil, fmt.Errorf("incus list --project %s: %w", incusProject, err)
	}
	var mine []incusInstance
	for _, in := range all {
		// An idle warm-pool instance (user.jerichoci.pool set) is the pool's
		// while its daemon runs, not a leak; serve deletes them when it stops.
		if s.fleet != "" && in.Config[configFleet] == s.fleet && in.Config["user.jerichoci.pool"] == "" {
			mine = append(mine, in)
		}
	}
	return mine, nil
}

// report is what the soak counted.
type report struct {
	submitted, finals               int
	dupFiles, dupEvents, duplicates []string // job ids
	lost                            []string
	infra                           []string
	statuses                        map[string]int
	noRunFile                       int
	attempts                        int // run directories in all
	otherRuns                       map[string]int
	otherLookFinal                  []string // "job run"
	eventsFinal, eventsRuns, dead   int
	leaked                          []incusInstance
	kills                           int
	start, mid, end                 []rssSample
	timedOut                        bool
	elapsed, span                   time.Duration
	errs                            []string
	eventsErr, filesErr             string
}

// nonFinal start the messages of attempts that are not a job's result.
var nonFinal = []string{"infrastructure error on delivery", "interrupted:", "superseded:"}

// count reads the final records, the events stream and the state roots.
func (s *soak) count(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) report {
	rep := report{statuses: map[string]int{}, otherRuns: map[string]int{}}
	s.mu.Lock()
	ids := make([]string, 0, len(s.ids))
	for id := range s.ids {
		ids = append(ids, id)
	}
	results := map[string]result{}
	for id, r := range s.results {
		results[id] = r
	}
	s.mu.Unlock()
	sort.Strings(ids)
	rep.submitted = len(ids)

	// The watcher may be behind: read the jobs it has not seen.
	for _, id := range ids {
		if _, ok := results[id]; ok {
			continue
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		e, err := kv.Get(gctx, id)
		cancel()
		if err != nil {
			continue
		}
		var r result
		if json.Unmarshal(e.Value(), &r) == nil {
			results[id] = r
		}
	}

	// Events: run_finished per job, and how many say Jerichoci-Final: true.
	finalEvents := map[string]int{}
	if err := eachEvent(ctx, js, func(h nats.Header) {
		if h.Get(protocol.HeaderEvent) != "run_finished" {
			return
		}
		rep.eventsRuns++
		if h.Get(protocol.HeaderFinal) == "true" {
			rep.eventsFinal++
			finalEvents[h.Get(protocol.HeaderJobID)]++
		}
	}); err != nil {
		rep.eventsErr = err.Error()
	}
	if st, err := js.Stream(ctx, protocol.StreamDead); err == nil {
		if info, err := st.Info(ctx); err == nil {
			rep.dead = int(info.State.Msgs)
		}
	}

	// Run directories: <root>/runs/<run_id>/{jerichoci-job.json,run.json}.
	type diskRun struct {
		root string
		rec  result
	}
	runs := map[string][]diskRun{}
	for _, d := range s.daemons {
		dirs, err := filepath.Glob(filepath.Join(d.stateRoot, "runs", "*"))
		if err != nil {
			rep.filesErr = err.Error()
		}
		for _, dir := range dirs {
			var jf protocol.JobFile
			if readJSON(filepath.Join(dir, protocol.JobFileName), &jf) != nil {
				continue
			}
			var rec result
			if err := readJSON(filepath.Join(dir, "run.json"), &rec); err != nil {
				rec = result{RunID: filepath.Base(dir), Status: "no run.json"}
			}
			runs[jf.JobID] = append(runs[jf.JobID], diskRun{root: d.name, rec: rec})
			rep.attempts++
		}
	}

	for _, id := range ids {
		r, ok := results[id]
		if !ok {
			rep.lost = append(rep.lost, id)
			continue
		}
		rep.finals++
		rep.statuses[r.Status]++
		msg := r.message()
		if strings.HasPrefix(msg, "infrastructure error") || strings.HasPrefix(msg, "gave up") {
			rep.infra = append(rep.infra, id)
		}
		files := 0
		for _, dr := range runs[id] {
			if dr.rec.RunID == r.RunID {
				files++
				continue
			}
			kind := dr.rec.Status
			for _, p := range nonFinal {
				if strings.HasPrefix(dr.rec.message(), p) {
					kind = strings.TrimSuffix(p, ":")
				}
			}
			rep.otherRuns[kind]++
			if kind == "passed" || kind == "failed" {
				rep.otherLookFinal = append(rep.otherLookFinal, fmt.Sprintf("%s run %s on %s (%s %q)", id, dr.rec.RunID, dr.root, dr.rec.Status, dr.rec.message()))
			}
		}
		dup := false
		if files > 1 {
			rep.dupFiles, dup = append(rep.dupFiles, id), true
		}
		if files == 0 {
			rep.noRunFile++
		}
		if finalEvents[id] > 1 {
			rep.dupEvents, dup = append(rep.dupEvents, id), true
		}
		if dup {
			rep.duplicates = append(rep.duplicates, id)
		}
	}
	return rep
}

// eachEvent calls f with the headers of every message of the events stream.
func eachEvent(ctx context.Context, js jetstream.JetStream, f func(nats.Header)) error {
	st, err := js.Stream(ctx, protocol.StreamEvents)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, protocol.StreamEvents, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		return err
	}
	seen := uint64(0)
	for seen < info.State.Msgs {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		n := 0
		last := false
		for m := range batch.Messages() {
			n++
			seen++
			f(m.Headers())
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				last = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if last || n == 0 {
			break
		}
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (s *soak) print(rep report) int {
	w := os.Stdout
	short := func(ids []string) string {
		if len(ids) == 0 {
			return ""
		}
		if len(ids) > 5 {
			return fmt.Sprintf(" (e.g. %s, …)", strings.Join(ids[:5], ", "))
		}
		return " (" + strings.Join(ids, ", ") + ")"
	}
	fmt.Fprintf(w, "\n== jerichoci soak: %d jobs, %d daemons x %d workers, %s, fleet %s\n",
		s.cfg.jobs, s.cfg.daemons, s.cfg.concurrency, s.cfg.killsText(), s.fleet)
	fmt.Fprintf(w, "jobs submitted        %d\n", rep.submitted)
	var st []string
	for k, v := range rep.statuses {
		st = append(st, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(st)
	fmt.Fprintf(w, "final records         %d (%s)\n", rep.finals, strings.Join(st, ", "))
	fmt.Fprintf(w, "duplicates            %d: %d jobs with more than one run.json of their final run%s, %d jobs with more than one Jerichoci-Final: true event%s\n",
		len(rep.duplicates), len(rep.dupFiles), short(rep.dupFiles), len(rep.dupEvents), short(rep.dupEvents))
	fmt.Fprintf(w, "lost                  %d%s\n", len(rep.lost), short(rep.lost))
	fmt.Fprintf(w, "infrastructure fails  %d%s\n", len(rep.infra), short(rep.infra))
	fmt.Fprintf(w, "leaked instances      %d", len(rep.leaked))
	if len(rep.leaked) > 0 {
		var names []string
		for _, in := range rep.leaked {
			names = append(names, in.Name+" "+in.Status)
		}
		fmt.Fprintf(w, " (%s)", strings.Join(names, ", "))
	}
	fmt.Fprintf(w, " (fleet %s, after the reap wait)\n", s.fleet)
	fmt.Fprintf(w, "kills                 %d (%s)\n", rep.kills, s.cfg.killsText())
	tp := "n/a"
	if rep.span > 0 {
		tp = fmt.Sprintf("%.1f jobs/min (%d final records in %s, from the first publish to the last final record)",
			float64(rep.finals)/rep.span.Minutes(), rep.finals, rep.span.Round(time.Second))
	}
	fmt.Fprintf(w, "throughput            %s\n", tp)
	fmt.Fprintf(w, "VmRSS                 start / middle (half the jobs final) / end (after the reap wait); pid, process age, process number\n")
	for i, d := range s.daemons {
		cell := func(ss []rssSample) string {
			if i >= len(ss) {
				return "-"
			}
			r := ss[i]
			if r.err != nil {
				return r.err.Error()
			}
			return fmt.Sprintf("%s (pid %d, %s, #%d)", mib(r.bytes), r.pid, r.age.Round(time.Second), r.starts)
		}
		note := ""
		if i < len(rep.mid) && i < len(rep.end) && rep.mid[i].err == nil && rep.end[i].err == nil && rep.mid[i].bytes > 0 {
			ratio := float64(rep.end[i].bytes)/float64(rep.mid[i].bytes) - 1
			note = fmt.Sprintf("  end %+.0f%% of middle", ratio*100)
			if ratio > 0.2 || ratio < -0.2 {
				note += " (more than 20%)"
			}
		}
		fmt.Fprintf(w, "  %-4s %s / %s / %s%s\n", d.name, cell(rep.start), cell(rep.mid), cell(rep.end), note)
	}
	var other []string
	for k, v := range rep.otherRuns {
		other = append(other, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(other)
	fmt.Fprintf(w, "attempts              %d run directories; besides the final runs: %s\n", rep.attempts, orNone(strings.Join(other, ", ")))
	fmt.Fprintf(w, "events                %d run_finished, %d with Jerichoci-Final: true; %d dead letters\n", rep.eventsRuns, rep.eventsFinal, rep.dead)
	if rep.noRunFile > 0 {
		fmt.Fprintf(w, "note                  %d final records have no run.json in any state root\n", rep.noRunFile)
	}
	if len(rep.otherLookFinal) > 0 {
		fmt.Fprintf(w, "note                  %d attempts that are not the result ended passed/failed without a not-final message:\n", len(rep.otherLookFinal))
		for _, l := range rep.otherLookFinal[:min(10, len(rep.otherLookFinal))] {
			fmt.Fprintf(w, "                        %s\n", l)
		}
	}
	for _, e := range []string{rep.eventsErr, rep.filesErr} {
		if e != "" {
			rep.errs = append(rep.errs, e)
		}
	}
	for _, e := range rep.errs {
		fmt.Fprintf(w, "error                 %s\n", e)
	}
	if rep.timedOut {
		fmt.Fprintf(w, "note                  SOAK_TIMEOUT %s was up before every job had its final record\n", s.cfg.timeout)
	}
	fmt.Fprintf(w, "wall time             %s\n", rep.elapsed.Round(time.Second))

	// The evidence for every bad job: its final record and its log lines.
	var bad []string
	seenBad := map[string]bool{}
	for _, id := range append(append(append([]string{}, rep.lost...), rep.duplicates...), rep.infra...) {
		if !seenBad[id] {
			seenBad[id] = true
			bad = append(bad, id)
		}
	}
	if len(bad) > 0 {
		fmt.Fprintf(w, "\n== daemon log lines of the lost, duplicated and infrastructure-failed jobs (up to 10 jobs)\n")
		for _, id := range bad[:min(10, len(bad))] {
			s.mu.Lock()
			r, ok := s.results[id]
			s.mu.Unlock()
			if ok {
				fmt.Fprintf(w, "-- job %s: final run %s %s %q\n", id, r.RunID, r.Status, r.message())
			} else {
				fmt.Fprintf(w, "-- job %s: no final record\n", id)
			}
			for _, l := range s.timeline(id, 40) {
				fmt.Fprintf(w, "   %s\n", l)
			}
		}
	}
	fail := len(rep.lost) > 0 || len(rep.duplicates) > 0 || len(rep.leaked) > 0
	if fail {
		fmt.Fprintf(w, "\nsoak: FAILED (lost %d, duplicates %d, leaked %d)\n", len(rep.lost), len(rep.duplicates), len(rep.leaked))
		return 1
	}
	fmt.Fprintf(w, "\nsoak: ok (0 lost, 0 duplicates, 0 leaked)\n")
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// cleanup stops whatever still runs, deletes the fleet's instances, keeps
// the logs if asked and removes the temp dir.
func (s *soak) cleanup() {
	if len(s.daemons) > 0 {
		s.stopDaemons(true)
	}
	if s.fleet != "" {
		if left, err := s.fleetInstances(); err != nil {
			logf("cleanup: %v", err)
		} else if len(left) > 0 {
			args := []string{"delete", "--force", "--project", incusProject}
			for _, in := range left {
				args = append(args, in.Name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			out, err := exec.CommandContext(ctx, "incus", args...).CombinedOutput()
			cancel()
			if err != nil {
				logf("cleanup: incus delete %d instances: %v: %s", len(left), err, bytes.TrimSpace(out))
			} else {
				logf("cleanup: deleted %d instances of fleet %s", len(left), s.fleet)
			}
		}
	}
	if s.nats != nil {
		_ = s.nats.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.natsEnd:
		case <-time.After(15 * time.Second):
			_ = s.nats.Process.Signal(syscall.SIGKILL)
			<-s.natsEnd
		}
	}
	if s.cfg.logDir != "" {
		if err := copyLogs(filepath.Join(s.tmp, "logs"), s.cfg.logDir); err != nil {
			logf("cleanup: keep the logs: %v", err)
		} else {
			logf("logs kept in %s", s.cfg.logDir)
		}
	}
	if err := os.RemoveAll(s.tmp); err != nil {
		logf("cleanup: remove %s: %v", s.tmp, err)
	}
}

func copyLogs(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// logHas reports whether the file holds want after offset.
func logHas(path string, offset int64, want string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	b, _ := io.ReadAll(f)
	return bytes.Contains(b, []byte(want))
}

func appendLog(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line)
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// keyMessages are the daemon log messages that tell a job's story.
var keyMessages = map[string]bool{"run started": true, "closed a run left running by an earlier process": true,
	"job settled": true, "reaped orphan instance": true}

// timeline returns a job's story across the daemons' logs, in time order:
// its warnings and errors and its key messages (the daemon logger's, not
// the run's), with the soak's kills of the daemons involved in between;
// at most n lines (the first n-5 and the last 5).
func (s *soak) timeline(id string, n int) []string {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	involved := map[string]bool{}
	var first, last time.Time
	for _, d := range s.daemons {
		f, err := os.Open(d.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			l := sc.Text()
			if !strings.Contains(l, id) {
				continue
			}
			var e struct {
				Level, TS, Logger, Msg string
			}
			if json.Unmarshal([]byte(l), &e) != nil {
				continue
			}
			if e.Level == "info" && (!keyMessages[e.Msg] || e.Logger != "daemon") {
				continue
			}
			at, _ := time.Parse(time.RFC3339Nano, e.TS)
			if len(l) > 700 {
				l = l[:700] + "…"
			}
			lines = append(lines, line{at, d.name + ": " + l})
			involved[d.name] = true
			if first.IsZero() || at.Before(first) {
				first = at
			}
			if at.After(last) {
				last = at
			}
		}
		f.Close()
	}
	for _, d := range s.daemons {
		if !involved[d.name] {
			continue
		}
		b, _ := os.ReadFile(d.logPath)
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "=== soak: kill -9 ") {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, l[strings.LastIndex(l, " ")+1:])
			if err == nil && !at.Before(first) && !at.After(last) {
				lines = append(lines, line{at, d.name + ": " + l})
			}
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	var out []string
	for _, l := range lines {
		out = append(out, l.text)
	}
	if len(out) > n {
		out = append(append(out[:n-5:n-5], fmt.Sprintf("… %d lines …", len(out)-n)), out[len(out)-5:]...)
	}
	return out
}
