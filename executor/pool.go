package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/internal/atomicfile"
	"jerichoci/internal/treecopy"
	"jerichoci/model"
)

// Warm-pool instance keys: an idle pool instance carries ConfigPool (the
// alias it was made from) and the pool's owner; a job that takes it sets
// the job's run, job and owner keys on it, so from then on it is that
// job's instance in every way (teardown, reaper).
const (
	ConfigPool = "user.jerichoci.pool"
	// PoolRequestGuestDir is where a pool instance sees its host request
	// directory, read-only: the guest request is written there, on the
	// host, instead of being pushed through Incus.
	PoolRequestGuestDir = "/run/jerichoci-request"
	// PoolRequestGuestPath is the guest request a pool instance's runner reads.
	PoolRequestGuestPath = PoolRequestGuestDir + "/guest-request.json"
)

// Pool keeps started instances ready for jobs: per (image alias, instance
// type) it keeps Size instances created, started and answering exec, from
// the alias's current image, with the executor's project, profiles,
// limits, root disk and fleet. Each has two host directories attached
// read-only at creation, its workspace (at /workspace/snapshot) and its
// request directory: a job that takes one fills them on the host, so
// taking an instance costs one Incus call (setting the job's keys). One
// instance serves one job: a taken instance is torn down with its job and
// never comes back. The pool refills in the background, drains instances
// of an alias whose image moved, and recycles idle ones after MaxAge.
type Pool struct {
	Backend Backend
	Config  Config
	// Size is how many idle instances to keep per key when Sizing is
	// unset (a fixed size, made one at a time).
	Size int
	// Sizing sizes the pool to demand (executor/poolsize.go); Max 0: Size.
	Sizing PoolSizing
	// Queue tells the jobs waiting in the work queue; nil: none counted.
	Queue QueueDepth
	// Load counts other incusd work in flight (the jobs' teardowns); nil: none.
	Load func() int
	// Dir holds each instance's host directories (<Dir>/<instance>/).
	Dir string
	// Owner is the owner key of idle instances, e.g. "jerichoci-pool/<daemon id>".
	Owner string
	// MaxAge recycles an idle instance (default 10 min): a reaper deletes
	// pool instances older than twice this, so a dead daemon's pool goes.
	MaxAge time.Duration
	Log    *zap.Logger
	// PreExec starts the guest runner in each ready instance ahead of its
	// job (`RUNNER --wait-for-request PATH`), attached over the exec
	// websockets: a job then only writes its request on the host and the
	// runner's output is already streaming. A runner that does not know
	// the flag ends at once; the pool then deletes that instance and stops
	// pre-starting.
	PreExec bool

	mu     sync.Mutex
	idle   map[poolKey][]*warmInstance
	want   map[poolKey]string // key -> the image fingerprint jobs asked for
	making map[poolKey]int
	asked  map[poolKey]*arrivals
	// waiting are jobs waiting for an instance being made (poolwait.go).
	waiting map[poolKey][]*waiter
	stats   PoolStats
	kick    chan struct{}
	once    sync.Once
}

type poolKey struct {
	alias string
	itype model.InstanceType
}

type warmInstance struct {
	name, fingerprint string
	created           time.Time
	pre               *preExec
	stateDir          string
}

// Taken is a pool instance handed to a job, with its runner when the pool
// started one.
type Taken struct {
	Name     string
	pre      *preExec
	stateDir string // its GuestDir on the host (statedir.go); "": none
}

// PoolStats counts the pool's work.
type PoolStats struct {
	Ready, Taken, Missed, Created, Failed, Drained int
	// Waited counts takes that waited for an instance being made.
	Waited int
}

// DefaultPoolMaxAge is Pool.MaxAge's default.
const DefaultPoolMaxAge = 10 * time.Minute

func (p *Pool) init() {
	p.once.Do(func() {
		p.idle = map[poolKey][]*warmInstance{}
		p.want = map[poolKey]string{}
		p.making = map[poolKey]int{}
		p.asked = map[poolKey]*arrivals{}
		p.kick = make(chan struct{}, 1)
	})
}

func (p *Pool) maxAge() time.Duration {
	if p.MaxAge > 0 {
		return p.MaxAge
	}
	return DefaultPoolMaxAge
}

func (p *Pool) logger() *zap.Logger {
	if p.Log == nil {
		return zap.NewNop()
	}
	return p.Log
}

// Want asks the pool to keep instances of alias (its image now at
// fingerprint) and type ready.
func (p *Pool) Want(alias string, itype model.InstanceType, fingerprint string) {
	p.init()
	p.mu.Lock()
	k := poolKey{alias, itype}
	changed := p.want[k] != fingerprint
	p.want[k] = fingerprint
	p.mu.Unlock()
	if changed {
		p.refill()
	}
}

// Take hands an idle instance of the key, made from fingerprint, to a job:
// the caller owns it from then on. False when none is ready (the job then
// creates its own, and the pool learns to keep this key warm).
func (p *Pool) Take(alias string, itype model.InstanceType, fingerprint string) (Taken, bool) {
	p.init()
	p.mu.Lock()
	k := poolKey{alias, itype}
	p.want[k] = fingerprint
	p.arrivalsLocked(k).add(time.Now())
	list := p.idle[k]
	for len(list) > 0 {
		w := list[0]
		list = list[1:]
		if w.pre != nil && w.pre.ended() {
			p.logger().Warn("warm pool: the guest runner ended before its job (it may not know --wait-for-request); no more pre-started runners",
				zap.String("instance", w.name))
			p.PreExec = false
			p.stats.Drained++
			go p.destroy(w)
			continue
		}
		if w.fingerprint == fingerprint && time.Since(w.created) < p.maxAge() {
			p.idle[k] = list
			p.stats.Taken++
			p.mu.Unlock()
			p.refill()
			return Taken{Name: w.name, pre: w.pre, stateDir: w.stateDir}, true
		}
		p.stats.Drained++
		go p.destroy(w)
	}
	p.idle[k] = list
	p.stats.Missed++
	p.mu.Unlock()
	p.refill()
	return Taken{}, false
}

// Stats returns the counts so far and how many instances are ready.
func (p *Pool) Stats() PoolStats {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	for _, l := range p.idle {
		s.Ready += len(l)
	}
	return s
}

func (p *Pool) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run keeps the pool filled until ctx ends, then deletes the idle
// instances (bounded by the cleanup timeout). It looks at the demand
// every second, and at the images every 5 s.
func (p *Pool) Run(ctx context.Context) {
	p.init()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	ticks := 0
	for {
		p.fill(ctx)
		select {
		case <-ctx.Done():
			p.drainAll()
			return
		case <-p.kick:
		case <-t.C:
			if ticks++; ticks%5 == 0 {
				p.checkImages(ctx)
			}
		}
	}
}

func (p *Pool) sizing() PoolSizing {
	s := p.Sizing
	if s.Max == 0 {
		s = PoolSizing{Min: p.Size, Max: p.Size, Budget: 1}
	}
	if s.Window <= 0 {
		s.Window = DefaultPoolWindow
	}
	return s
}

func (p *Pool) arrivalsLocked(k poolKey) *arrivals {
	a := p.asked[k]
	if a == nil {
		a = &arrivals{}
		p.asked[k] = a
	}
	return a
}

// fill plans each wanted key (PoolSizing.Plan), starts the creates the
// plan allows at once and waits for them, until no key needs more; an
// idle instance above its key's target for a whole window goes.
func (p *Pool) fill(ctx context.Context) {
	s := p.sizing()
	for ctx.Err() == nil {
		pending := 0
		if p.Queue != nil {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n, err := p.Queue.Pending(qctx)
			cancel()
			if err == nil {
				pending = n
			}
		}
		load := 0
		if p.Load != nil {
			load = p.Load()
		}
		type create struct {
			k  poolKey
			fp string
		}
		var batch []create
		now := time.Now()
		p.mu.Lock()
		making := 0
		for _, n := range p.making {
			making += n
		}
		for key, want := range p.want {
			p.recycleLocked(key)
			d := PoolDemand{Pending: pending, Arrivals: p.arrivalsLocked(key).count(now, s.Window),
				Ready: len(p.idle[key]), Making: making, Load: load + len(batch)}
			target, start := s.Plan(d)
			p.shrinkLocked(key, target, now, s.Window)
			// Making and Load are the pool's as a whole: the budget is incusd's.
			d.Ready, d.Making = len(p.idle[key]), p.making[key]
			if gap := target - d.Ready - d.Making; start > gap {
				start = max(gap, 0)
			}
			for range start {
				p.making[key]++
				batch = append(batch, create{key, want})
			}
		}
		p.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		var wg sync.WaitGroup
		failed := false
		var fmu sync.Mutex
		for _, c := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !p.createOne(ctx, c.k, c.fp) {
					fmu.Lock()
					failed = true
					fmu.Unlock()
				}
			}()
		}
		wg.Wait()
		if failed {
			return // try again at the next tick or take
		}
	}
}

// createOne makes one instance of k and files it as idle; false when it failed.
func (p *Pool) createOne(ctx context.Context, k poolKey, fp string) bool {
	w, err := p.create(ctx, k, fp)
	p.mu.Lock()
	p.making[k]--
	if err != nil {
		p.stats.Failed++
		p.failWaiterLocked(k)
		p.mu.Unlock()
		p.logger().Warn("warm pool: create instance", zap.String("alias", k.alias), zap.Error(err))
		return false
	}
	p.stats.Created++
	if p.want[k] == fp {
		p.handLocked(k, w)
		p.mu.Unlock()
		p.logger().Info("warm pool: instance ready", zap.String("instance", w.name), zap.String("alias", k.alias))
		return true
	}
	p.stats.Drained++
	p.failWaiterLocked(k)
	p.mu.Unlock()
	p.destroy(w) // the image moved while it was made
	return true
}

// shrinkLocked deletes idle instances above target that waited a whole
// window (the oldest first): a burst's extra instances go once it is over.
func (p *Pool) shrinkLocked(k poolKey, target int, now time.Time, window time.Duration) {
	list := p.idle[k]
	for len(list) > target && now.Sub(list[0].created) >= window {
		p.stats.Drained++
		go p.destroy(list[0])
		list = list[1:]
	}
	p.idle[k] = list
}

// recycleLocked drops idle instances past MaxAge or of an older image.
func (p *Pool) recycleLocked(k poolKey) {
	keep := p.idle[k][:0]
	for _, w := range p.idle[k] {
		if w.fingerprint != p.want[k] || time.Since(w.created) >= p.maxAge() {
			p.stats.Drained++
			go p.destroy(w)
			continue
		}
		keep = append(keep, w)
	}
	p.idle[k] = keep
}

// checkImages notices an alias that moved to a new image.
func (p *Pool) checkImages(ctx context.Context) {
	p.mu.Lock()
	keys := make([]poolKey, 0, len(p.want))
	for k := range p.want {
		keys = append(keys, k)
	}
	p.mu.Unlock()
	for _, k := range keys {
		img, err := p.Backend.Image(ctx, k.alias)
		if err != nil {
			continue
		}
		p.mu.Lock()
		if p.want[k] != img.Fingerprint {
			p.logger().Info("warm pool: image moved; draining", zap.String("alias", k.alias), zap.String("fingerprint", img.Fingerprint))
			p.want[k] = img.Fingerprint
		}
		p.mu.Unlock()
	}
}

// create makes, starts and readies one pool instance, and starts its
// runner when the pool pre-starts them.
func (p *Pool) create(ctx context.Context, k poolKey, fp string) (*warmInstance, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	name := "pikaci-w" + hex.EncodeToString(b)
	ws, req := p.workspaceDir(name), p.requestDir(name)
	cfg := p.Config
	for _, d := range []string{ws, req} {
		if cfg.Transfer.api() {
			break // the job's files go through the Incus API
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	spec, err := instanceSpec(ctx, p.Backend, cfg, name, k.itype, k.alias)
	if err != nil {
		return nil, err
	}
	spec.Config[ConfigOwner] = p.Owner
	spec.Config[ConfigPool] = k.alias
	spec.Config[ConfigRunID] = "pool"
	spec.Config[ConfigJobID] = "pool"
	if !cfg.Transfer.api() {
		spec.Disks = []Disk{
			{Name: model.SnapshotDeviceName(ws, GuestSnapshotPath), Source: ws, Path: GuestSnapshotPath, ReadOnly: true},
			{Name: "pk-request", Source: req, Path: PoolRequestGuestDir, ReadOnly: true},
		}
	}
	w := &warmInstance{name: name, fingerprint: fp}
	if stateDirMounts(p.Backend, cfg, k.itype) {
		w.stateDir = filepath.Join(p.Dir, name, "state")
		d, err := makeStateDir(w.stateDir)
		if err != nil {
			_ = p.Release(name)
			return nil, err
		}
		spec.Disks = append(spec.Disks, d)
	}
	cctx, cancel := context.WithTimeout(ctx, readyTimeout(cfg)+time.Minute)
	defer cancel()
	if err := p.Backend.CreateInstance(cctx, spec); err != nil {
		p.destroy(w)
		return nil, fmt.Errorf("create pool instance %q from `%s`: %w", name, k.alias, err)
	}
	if err := waitReady(cctx, p.Backend, cfg, name); err != nil {
		p.destroy(w)
		return nil, fmt.Errorf("pool instance %q: %w", name, err)
	}
	if w.stateDir != "" {
		if err := ownStateDir(cctx, p.Backend, name, w.stateDir); err != nil {
			p.destroy(w)
			return nil, fmt.Errorf("pool instance %q: %w", name, err)
		}
	}
	p.mu.Lock()
	preExec := p.PreExec
	p.mu.Unlock()
	if preExec {
		w.pre = p.startRunner(name)
	}
	w.created = time.Now()
	return w, nil
}

func (p *Pool) workspaceDir(name string) string { return filepath.Join(p.Dir, name, "workspace") }
func (p *Pool) requestDir(name string) string   { return filepath.Join(p.Dir, name, "request") }

// Release deletes a taken instance's host directories, after the instance.
func (p *Pool) Release(name string) error { return os.RemoveAll(filepath.Join(p.Dir, name)) }

// destroy deletes an instance of the pool and its directories (its
// runner, if any, ends with it).
func (p *Pool) destroy(w *warmInstance) {
	name := w.name
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout(p.Config))
	defer cancel()
	if w.pre != nil {
		defer w.pre.cancel()
	}
	if err := deleteRunning(ctx, p.Backend, name); err != nil {
		p.logger().Warn("warm pool: delete instance", zap.String("instance", name), zap.Error(err))
		return
	}
	_ = p.Release(name)
}

// drainAll deletes every idle instance (daemon shutdown).
func (p *Pool) drainAll() {
	p.mu.Lock()
	var all []*warmInstance
	for k, l := range p.idle {
		all = append(all, l...)
		delete(p.idle, k)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range all {
		wg.Add(1)
		go func() { defer wg.Done(); p.destroy(w) }()
	}
	wg.Wait()
}

// fillWorkspace makes the job's snapshot the instance's workspace: hard
// links where the two are on one filesystem (the snapshot is never written
// again), copies otherwise (internal/treecopy).
func (p *Pool) fillWorkspace(ctx context.Context, name, snapshot string) error {
	if snapshot == "" {
		return nil
	}
	return treecopy.Copy(ctx, snapshot, p.workspaceDir(name), treecopy.Options{Link: true})
}

// writeRequest writes the guest request where the instance sees it, at
// PoolRequestGuestPath.
func (p *Pool) writeRequest(name string, req []byte) error {
	// Written whole, then renamed: a runner started ahead polls for the
	// name and must never read a half-written file.
	return atomicfile.WriteFile(filepath.Join(p.requestDir(name), "guest-request.json"), req, 0o644)
}

// Prewarm starts keeping instances of alias ready, of the type a job of
// the pool's configured instance type gets from that image: a container
// for a container image (unless virtual machines were asked for), a VM
// for a VM image where the server runs VMs. An image or server that gives
// no such type prewarms nothing (jobs then say why when they run).
func (p *Pool) Prewarm(ctx context.Context, alias string) error {
	img, err := p.Backend.Image(ctx, alias)
	if err != nil {
		return err
	}
	itype := model.InstanceContainer
	switch {
	case img.Type == model.InstanceContainer && p.Config.InstanceType != model.InstanceVirtualMachine:
	case img.Type == model.InstanceVirtualMachine && p.Config.InstanceType != model.InstanceContainer:
		vms, _, err := p.Backend.VirtualMachines(ctx)
		if err != nil || !vms {
			return err
		}
		itype = model.InstanceVirtualMachine
	default:
		return nil
	}
	p.Want(alias, itype, img.Fingerprint)
	return nil
}
