package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"jerichoci/internal/backoff"
	"jerichoci/run"
	"jerichoci/run/protocol"
	"jerichoci/sourcetar"
	"jerichoci/targets"
)

// OwnerPrefix starts the executor owner of every instance the daemon
// creates: "jerichoci-serve/<job key>/<worker>". The reaper only ever
// considers instances whose owner has it (never those of `jerichoci run`).
const OwnerPrefix = "jerichoci-serve/"

// Causes of a job's cancellation.
var (
	errCancelRequested = errors.New("cancelled")
	errShutdown        = errors.New("the daemon is stopping")
	errLostClaim       = errors.New("another worker took the job over")
)

// DaemonConfig tunes the worker pool.
type DaemonConfig struct {
	// ID names this daemon in claims, instance owners and logs.
	ID string
	// PoolOwner is the owner key of this process's idle warm-pool
	// instances (PoolOwnerPrefix…), which its reaper leaves to the pool;
	// PoolMaxAge the pool's recycling age (idle pool instances of other
	// owners are reaped past twice that).
	PoolOwner  string
	PoolMaxAge time.Duration
	// Process names this process in its instances' config (see Processes,
	// owners.go); "" turns the owner-process rules off.
	Process     string
	Concurrency int
	// Delivery must be the consumer's (QueueConfig.Delivery).
	Delivery
	// Heartbeat is how often a running job sends InProgress and refreshes
	// its claim (0: 2s, or AckWait/3 when that is shorter); a claim not
	// refreshed for StaleBeats heartbeats belongs to a dead worker.
	Heartbeat  time.Duration
	StaleBeats int
	// TakeoverAfter is how long a delivery must itself watch a stale claim
	// stay unchanged before it takes the job over (0: the stale window).
	// A claim's age alone is no proof: while the claims bucket elects a
	// leader, or while the holder's NATS connection is being replaced,
	// every worker's refreshes fail, and the first write after the outage
	// would otherwise be a takeover of a live job (docs/RELIABILITY.md).
	TakeoverAfter time.Duration
	// OutageBound is how long a delivery waits out a failing bucket (its
	// claim, its result) before it hands the job back as an infrastructure
	// error (0: 5 minutes, or twice OpTimeout when longer). Long is
	// harmless: nothing else can run while the buckets fail, and a holder
	// cut off meanwhile loses its job to the others all the same.
	OutageBound time.Duration
	// Fleet is the id of the fleet this daemon belongs to (the daemons
	// sharing one work stream), stamped on every instance it creates; its
	// reaper touches no instance of another fleet.
	Fleet string
	// RetryDelay is the NakWithDelay after an infrastructure error on the
	// first delivery; it doubles with each delivery, up to MaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// DrainTimeout bounds how long a graceful stop waits for running jobs.
	DrainTimeout time.Duration
	// ReapEvery is the orphan reaper's period.
	ReapEvery time.Duration
	// OpTimeout bounds each NATS call.
	OpTimeout time.Duration
	// HostPathRoot, when set, is the directory host_path sources must
	// resolve under (symlinks included); empty refuses host_path sources.
	HostPathRoot string
	// SourceLimits bound what an uploaded source may unpack to.
	SourceLimits sourcetar.Limits
	// SourceCacheMaxAge and SourceCacheMaxBytes prune the unpacked-source
	// cache (least recently used first); 0 turns that bound off.
	SourceCacheMaxAge   time.Duration
	SourceCacheMaxBytes int64
	// PrecancelTTL is how long a cancel for a job that no worker has seen
	// is kept (its claim expires then).
	PrecancelTTL time.Duration
	// UnrunResultTTL is how long the final record of a job that never ran
	// (outcomeInvalid: its spec, target or source refused) is kept in the
	// results bucket, well below the bucket's own TTL: a flood of garbage
	// messages leaves records for this long only (docs/SECURITY.md).
	UnrunResultTTL time.Duration
	// KeepRuns, when positive, keeps only the newest KeepRuns run
	// directories (the rules of `jerichoci runs gc`), checked every ReapEvery.
	KeepRuns int
}

// DefaultDaemonConfig returns the defaults.
func DefaultDaemonConfig() DaemonConfig {
	return DaemonConfig{
		Concurrency: 2, Delivery: DefaultDelivery(), RetryDelay: 10 * time.Second, StaleBeats: 3,
		MaxRetryDelay: 5 * time.Minute, DrainTimeout: 10 * time.Minute, ReapEvery: 2 * time.Minute,
		OpTimeout: 30 * time.Second, SourceLimits: sourcetar.DefaultLimits(),
		SourceCacheMaxAge: 24 * time.Hour, SourceCacheMaxBytes: 8 << 30, KeepRuns: 1000,
		PrecancelTTL: 10 * time.Minute, UnrunResultTTL: time.Hour,
	}
}

// Validate reports every problem at once, but for Delivery's own rules:
// those are checked where Delivery is set, by QueueConfig.Validate (serve
// validates the queue's and hands it over) and by Run.
func (c DaemonConfig) Validate() error {
	var errs []error
	if !protocol.ValidJobKey(strings.ReplaceAll(c.ID, ".", "_")) {
		errs = append(errs, fmt.Errorf("daemon id %q: expected 1-128 letters, digits, '.', '_' or '-'", c.ID))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", c.Concurrency))
	}
	if c.Heartbeat < 0 || (c.Heartbeat > 0 && 2*c.Heartbeat > c.AckWait) {
		errs = append(errs, fmt.Errorf("heartbeat %s: must be positive and at most half the ack wait %s", c.Heartbeat, c.AckWait))
	}
	if c.StaleBeats < 2 {
		errs = append(errs, fmt.Errorf("stale beats %d: must be at least 2", c.StaleBeats))
	}
	if c.RetryDelay <= 0 || c.MaxRetryDelay < c.RetryDelay {
		errs = append(errs, fmt.Errorf("retry delay %s (max %s): must be positive and at most the maximum", c.RetryDelay, c.MaxRetryDelay))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %s: must not be negative", c.DrainTimeout))
	}
	if c.ReapEvery <= 0 {
		errs = append(errs, fmt.Errorf("reap period %s: must be positive", c.ReapEvery))
	}
	if c.PrecancelTTL < time.Second {
		errs = append(errs, fmt.Errorf("precancel ttl %s: must be at least 1s", c.PrecancelTTL))
	}
	if c.UnrunResultTTL < time.Second {
		errs = append(errs, fmt.Errorf("unrun result ttl %s: must be at least 1s", c.UnrunResultTTL))
	}
	if c.KeepRuns < 0 {
		errs = append(errs, fmt.Errorf("keep runs %d: must not be negative (0 keeps every run)", c.KeepRuns))
	}
	if c.SourceLimits.MaxBytes <= 0 || c.SourceLimits.MaxEntries <= 0 {
		errs = append(errs, fmt.Errorf("source limits %d bytes, %d entries: must be positive", c.SourceLimits.MaxBytes, c.SourceLimits.MaxEntries))
	}
	if c.OpTimeout <= 0 {
		errs = append(errs, fmt.Errorf("operation timeout %s: must be positive", c.OpTimeout))
	}
	return errors.Join(errs...)
}

func (c DaemonConfig) heartbeat() time.Duration {
	if c.Heartbeat > 0 {
		return c.Heartbeat
	}
	return min(2*time.Second, c.AckWait/3)
}

// infraPause is the first pause of a worker after an infrastructure
// failure (doubling with each one in a row, up to 30s).
func (c DaemonConfig) infraPause() time.Duration { return min(time.Second, c.RetryDelay) }

func (c DaemonConfig) staleAfter() time.Duration {
	return time.Duration(max(c.StaleBeats, 2)) * c.heartbeat()
}

func (c DaemonConfig) takeoverAfter() time.Duration {
	if c.TakeoverAfter > 0 {
		return c.TakeoverAfter
	}
	return c.staleAfter()
}

// beatTimeout bounds one heartbeat's write: a request sent on a
// connection that died unnoticed must not hold the heartbeat past the
// reconnect (the next beat goes out on the new connection).
func (c DaemonConfig) beatTimeout() time.Duration {
	return min(c.OpTimeout, 2*c.heartbeat())
}

// outageBound is OutageBound or its default: how long a delivery retries
// a bucket that fails (a leader election, a reconnect, a cluster without
// quorum for a while).
func (c DaemonConfig) outageBound() time.Duration {
	if c.OutageBound > 0 {
		return c.OutageBound
	}
	return max(5*time.Minute, 2*c.OpTimeout)
}

// Gate says when a worker may take jobs.
type Gate interface {
	// Open returns once jobs may be taken (nil), with a channel closed
	// when they no longer may, or ctx's error when it ends first.
	Open(ctx context.Context) (<-chan struct{}, error)
}

// Daemon is the worker pool of `jerichoci serve`: each worker pulls one job
// when it is free, fences it in the jobs bucket, runs it with the Runner,
// stores the final record and only then acknowledges the message.
type Daemon struct {
	Config  DaemonConfig
	Queue   Source
	Jobs    KV // claims, by job key
	Results KV // final run records, by job key
	Sources SourceStore
	Events  Publisher // may be nil
	// DeadLetters receives a dead letter for each job that runs out of
	// deliveries (may be nil).
	DeadLetters DeadLetterSink
	Catalog     *targets.Catalog
	// NewExecutor returns the executor of one attempt; owner goes into the
	// config of the instances it creates.
	NewExecutor func(owner string) run.JobExecutor
	// Records keeps whole final records too large for a KV value; nil
	// stores only the trimmed record.
	Records RecordStore
	// RecordLimit bounds a value of the results bucket and a run_finished
	// event (0: 1 MiB less room for headers); larger records are trimmed.
	RecordLimit int
	// Instances lets the reaper find and delete orphans; nil turns it off.
	Instances InstanceManager
	// Processes and Presence let the reaper prove an instance's creating
	// process gone (owners.go); nil turns each rule off.
	Processes Processes
	Presence  Presence
	// Waiting finds jobs in the work stream, so that lookups and cancels
	// tell an unknown job id from a queued job (lookup.go); nil: they
	// cannot, and take it as queued.
	Waiting QueuedJobs
	// Runner runs each attempt's plan (with the attempt's RunOptions) and
	// its Store writes every record of the attempt's run.
	Runner run.Runner
	// Observer, when set, sees runs, settlements and reaps (metrics).
	Observer Observer
	// Gate, when set, holds the workers' pulls while this host cannot run
	// jobs (its incusd unreachable: Health); nil: always open.
	Gate Gate
	Log  *zap.Logger

	killCtx  context.Context
	kill     context.CancelCauseFunc
	stopping chan struct{} // closed when pulling stops
	mu       sync.Mutex
	active   map[string]*attempt // by job key
	reapKick chan struct{}
	reapMu   sync.Mutex
	// reapWatch is the reaper's watch of silent claims (under reapMu).
	reapWatch silences
}

// Run pulls and runs jobs until ctx is done, then lets running jobs finish
// within DrainTimeout (or until Kill) and returns. Jobs cut short by Kill
// are handed back to the queue.
func (d *Daemon) Run(ctx context.Context) error {
	if err := errors.Join(d.Config.Delivery.Validate(), d.Config.Validate()); err != nil {
		return err
	}
	if d.Queue == nil || d.Jobs == nil || d.Results == nil || d.Catalog == nil || d.NewExecutor == nil {
		return errors.New("daemon: queue, jobs, results, catalog and executor are required")
	}
	d.init()
	log := d.logger()
	log.Info("daemon started", zap.Int("concurrency", d.Config.Concurrency), zap.Duration("ack_wait", d.Config.AckWait),
		zap.Duration("heartbeat", d.Config.heartbeat()), zap.Duration("stale_after", d.Config.staleAfter()),
		zap.Int("max_deliver", d.Config.MaxDeliver), zap.String("fleet", d.Config.Fleet))
	if d.Runner.StateRoot != "" {
		d.closeStaleRuns()
	}

	reapCtx, stopReap := context.WithCancel(context.WithoutCancel(ctx))
	var reapWG sync.WaitGroup
	reapWG.Add(1)
	go func() { defer reapWG.Done(); d.reapLoop(reapCtx) }()
	if d.Presence != nil && d.Config.Process != "" {
		reapWG.Add(1)
		go func() { defer reapWG.Done(); d.presenceLoop(reapCtx) }()
	}
	var wg sync.WaitGroup
	for i := 0; i < d.Config.Concurrency; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); d.workerLoop(ctx, d.Config.ID+"."+strconv.Itoa(i+1)) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	select {
	case <-done:
	case <-ctx.Done():
		close(d.stopping)
		n := d.activeCount()
		log.Info("stopping: no more pulls; waiting for running jobs", zap.Int("running", n), zap.Duration("drain_timeout", d.Config.DrainTimeout))
		timer := time.NewTimer(d.Config.DrainTimeout)
		select {
		case <-done:
		case <-timer.C:
			log.Warn("drain timeout: cancelling running jobs and handing them back", zap.Int("running", d.activeCount()))
			d.Kill()
			<-done
		case <-d.killCtx.Done():
			<-done
		}
		timer.Stop()
	}
	stopReap()
	reapWG.Wait()
	d.kill(errShutdown) // release the context's resources
	log.Info("daemon stopped")
	return nil
}

// Kill cancels the running jobs: their instances are deleted and their
// messages naked so that another worker runs them.
func (d *Daemon) Kill() {
	d.init()
	d.kill(errShutdown)
}

// init sets up the internal state once; Run and Kill may race.
func (d *Daemon) init() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active != nil {
		return
	}
	d.active = map[string]*attempt{}
	d.killCtx, d.kill = context.WithCancelCause(context.Background())
	d.stopping = make(chan struct{})
	d.reapKick = make(chan struct{}, 1)
}

func (d *Daemon) workerLoop(ctx context.Context, worker string) {
	log := d.logger().With(zap.String("worker", worker))
	pull := backoff.Backoff{First: time.Second, Max: 30 * time.Second}
	// sick counts this worker's infrastructure failures in a row: a worker
	// whose host is broken (a full state root, its incusd gone) waits
	// longer and longer before its next pull, so it does not spend the
	// fleet's deliveries of every job while healthy workers could run them.
	sick := 0
	// The pause after the nth failure in a row: infraPause doubled, at
	// most 32 times it and at most 30s.
	sickPause := backoff.Backoff{First: d.Config.infraPause(), Max: min(32*d.Config.infraPause(), 30*time.Second)}
	for ctx.Err() == nil {
		if sick > 0 {
			pause := sickPause.Nth(uint64(sick))
			log.Warn("infrastructure failures in a row; pausing before the next pull", zap.Int("failures", sick), zap.Duration("pause", pause))
			if backoff.Sleep(ctx, pause) != nil {
				return
			}
		}
		pullCtx, stopPull, err := d.gated(ctx)
		if err != nil {
			return // ctx ended while the gate was closed
		}
		msg, err := d.Queue.Next(pullCtx)
		closed := pullCtx.Err() != nil && ctx.Err() == nil
		stopPull()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if closed { // the gate closed while pulling: wait until it opens
				continue
			}
			pause := pull.Next()
			log.Warn("pull failed; retrying", zap.Error(err), zap.Duration("in", pause))
			if backoff.Sleep(ctx, pause) != nil {
				return
			}
			continue
		}
		pull.Reset()
		if ctx.Err() != nil {
			// Pulled while stopping: hand it straight back.
			if err := msg.Nak(); err != nil {
				log.Warn("nak after stop", zap.Error(err))
			}
			return
		}
		if closed {
			// Pulled as the gate closed: hand it to a worker that can run it.
			if err := msg.Nak(); err != nil {
				log.Warn("nak after the gate closed", zap.Error(err))
			}
			continue
		}
		if d.process(msg, worker, log) == outcomeInfra {
			sick++
		} else {
			sick = 0
		}
	}
}

// gated waits until the Gate is open and returns a context of ctx that
// ends when the gate closes (ctx's error if ctx ends first).
func (d *Daemon) gated(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if d.Gate == nil {
		return ctx, func() {}, nil
	}
	closed, err := d.Gate.Open(ctx)
	if err != nil {
		return nil, nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-closed:
			cancel()
		case <-pctx.Done():
		}
	}()
	return pctx, cancel, nil
}

func (d *Daemon) register(a *attempt) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active[a.key] = a
}

func (d *Daemon) unregister(a *attempt) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active[a.key] == a {
		delete(d.active, a.key)
	}
}

func (d *Daemon) activeAttempt(key string) *attempt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.active[key]
}

// runsLocally reports whether this daemon runs the run with this id.
func (d *Daemon) runsLocally(runID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.active {
		if a.runID() == runID {
			return true
		}
	}
	return false
}

func (d *Daemon) activeCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.active)
}

func (d *Daemon) isStopping() bool {
	select {
	case <-d.stopping:
		return true
	default:
		return false
	}
}

// opCtx bounds one NATS call; it never inherits a cancellation, so
// bookkeeping still happens while the daemon stops.
func (d *Daemon) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.Config.OpTimeout)
}

// beatCtx bounds one heartbeat's claim refresh (beatTimeout).
func (d *Daemon) beatCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.Config.beatTimeout())
}

func (d *Daemon) now() time.Time {
	if d.Runner.Now != nil {
		return d.Runner.Now()
	}
	return time.Now()
}

func (d *Daemon) newUUID() uuid.UUID {
	if d.Runner.NewUUID != nil {
		return d.Runner.NewUUID()
	}
	return uuid.New()
}

func (d *Daemon) recordLimit() int {
	if d.RecordLimit > 0 {
		return d.RecordLimit
	}
	return defaultRecordLimit
}

func (d *Daemon) logger() *zap.Logger {
	if d.Log != nil {
		return d.Log
	}
	return zap.NewNop()
}

func strPtr(s string) *string { return &s }
