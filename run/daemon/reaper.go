package daemon

import (
	"context"
	"errors"
	"jerichoci/executor"
	"jerichoci/run"
	"jerichoci/run/protocol"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
)

// OwnedInstance is an instance that carries all of jerichoci's config keys
// (user.jerichoci.run_id, job_id and owner).
type OwnedInstance struct {
	Name    string
	RunID   string
	JobID   string // the catalog job id, e.g. "hello"
	Owner   string
	Fleet   string    // user.jerichoci.fleet, "" when it has none
	Process string    // user.jerichoci.process, "" when it has none
	Created time.Time // when the instance was created
}

// InstanceManager is what the orphan reaper needs from the instance
// backend; cmd/jerichoci implements it over Incus.
type InstanceManager interface {
	// ListOwned returns only instances carrying all three keys.
	ListOwned(ctx context.Context) ([]OwnedInstance, error)
	// Delete force-deletes an instance; a missing one is not an error.
	Delete(ctx context.Context, name string) error
}

// jobKeyOfOwner returns the job key of a daemon-owned instance's owner
// ("jerichoci-serve/<job key>/<worker>"); false for any other owner.
func jobKeyOfOwner(owner string) (string, bool) {
	rest, ok := strings.CutPrefix(owner, OwnerPrefix)
	if !ok {
		return "", false
	}
	key, _, ok := strings.Cut(rest, "/")
	return key, ok && protocol.ValidJobKey(key)
}

// Reap deletes the instances whose creating process is provably gone
// (ownerGone: on this host whatever their fleet, on another host of this
// fleet once it is silent), and the instances of this daemon's fleet that
// nothing runs:
//   - a job's instance whose job is provably not running it: not here, and
//     not the live claim of their job (the claim is finished, belongs to
//     another run, is gone, or is stale past the staleness window and
//     then watched unchanged by this reaper for TakeoverAfter). One
//     younger than the staleness window is never reaped: its attempt may
//     not have written its claim yet;
//   - an idle warm-pool instance of another pool whose daemon is gone (see
//     poolInstanceGone).
//
// Otherwise instances of another fleet, without a fleet or a creation
// time, or of any other owner (such as a live `jerichoci run`) are never
// touched, nor ever an instance without our keys. It returns the deleted names.
func (d *Daemon) Reap(ctx context.Context) ([]string, error) {
	if d.Instances == nil {
		return nil, nil
	}
	d.init()
	d.reapMu.Lock()
	defer d.reapMu.Unlock()
	insts, err := d.Instances.ListOwned(ctx)
	if err != nil {
		return nil, err
	}
	d.reapWatch.begin()
	defer d.reapWatch.end()
	var deleted []string
	var errs []error
	for _, in := range insts {
		var log *zap.Logger
		var reaped string // the log line of its deletion
		pool := strings.HasPrefix(in.Owner, PoolOwnerPrefix)
		gone, why, err := d.ownerGone(ctx, in)
		if err != nil {
			errs = append(errs, err)
		}
		switch {
		case gone:
			log = d.logger().With(zap.String("instance", in.Name), zap.String("owner", in.Owner), zap.String("process", in.Process),
				zap.String("fleet", in.Fleet), zap.String("run_id", in.RunID))
			reaped, pool = why, false // its deletion failing is worth a warning
		case in.Fleet == "" || in.Fleet != d.Config.Fleet || in.Created.IsZero():
			continue // not ours to judge, or of unknown age
		case pool:
			if !d.poolInstanceGone(in) {
				continue
			}
			log = d.logger().With(zap.String("instance", in.Name), zap.String("owner", in.Owner))
			reaped = "reaped the idle pool instance of a daemon that is gone"
		default:
			key, ok := jobKeyOfOwner(in.Owner)
			if !ok || in.RunID == "" || d.runsLocally(in.RunID) {
				continue
			}
			if d.now().Sub(in.Created) < d.Config.staleAfter() {
				continue // too young to tell
			}
			cur, err := getClaim(ctx, d.Jobs, key)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if cur != nil && cur.State == protocol.ClaimRunning && cur.RunID == in.RunID {
				if time.Since(cur.written) < d.Config.staleAfter() {
					continue // its worker is alive
				}
				if d.reapWatch.watch(key, cur.rev) < d.Config.takeoverAfter() {
					continue // silent, but not yet watched silent for long enough
				}
			}
			log = d.logger().With(zap.String("instance", in.Name), zap.String("run_id", in.RunID), zap.String("job_id", key))
			reaped = "reaped orphan instance"
		}
		// A delete is teardown: a stop does not cut it short (its own
		// context, its own bound). Judging what else to delete still ends
		// with ctx: its reads of the buckets fail then.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reapDeleteTimeout)
		err = d.Instances.Delete(dctx, in.Name)
		cancel()
		if err != nil {
			if !pool {
				log.Warn("reap orphan instance", zap.Error(err))
			}
			errs = append(errs, err)
			continue
		}
		log.Info(reaped)
		deleted = append(deleted, in.Name)
	}
	if o := d.Observer; o != nil && len(deleted) > 0 {
		o.Reaped(len(deleted))
	}
	return deleted, errors.Join(errs...)
}

// reapDeleteTimeout bounds one delete of the reaper (a force stop and a
// delete take about a second; incusd under load, several).
const reapDeleteTimeout = 30 * time.Second

// PoolOwnerPrefix starts the owner key of idle warm-pool instances:
// "jerichoci-pool/<daemon id>/<process>".
const PoolOwnerPrefix = "jerichoci-pool/"

// poolInstanceGone: an idle pool instance (of this fleet, with a creation
// time: Reap checks those), not of this process's pool, older than twice
// the pool's MaxAge. A live pool recycles its idle instances at MaxAge, so
// such an instance belongs to a daemon that is gone.
func (d *Daemon) poolInstanceGone(in OwnedInstance) bool {
	if in.Owner == d.Config.PoolOwner {
		return false
	}
	// A daemon without a warm pool of its own has no PoolMaxAge; it still
	// reaps the pools of daemons that are gone, at the pools' default.
	maxAge := d.Config.PoolMaxAge
	if maxAge <= 0 {
		maxAge = executor.DefaultPoolMaxAge
	}
	return d.now().Sub(in.Created) > 2*maxAge
}

func (d *Daemon) kickReaper() {
	select {
	case d.reapKick <- struct{}{}:
	default:
	}
}

// collectRuns keeps the newest KeepRuns run directories (the rules of
// `jerichoci runs gc`), never one of a run in progress here.
func (d *Daemon) collectRuns() {
	if d.Config.KeepRuns <= 0 || d.Runner.StateRoot == "" {
		return
	}
	removed, err := run.GCExcept(d.Runner.StateRoot, d.Config.KeepRuns, d.runsLocally)
	if err != nil {
		d.logger().Warn("collect old runs", zap.Error(err))
	}
	if len(removed) > 0 {
		d.logger().Info("collected old runs", zap.Int("removed", len(removed)), zap.Int("keep_runs", d.Config.KeepRuns))
	}
}

// sourceCache is the unpacked-source cache under the state root.
func (d *Daemon) sourceCache() *SourceCache {
	return &SourceCache{Dir: filepath.Join(d.Runner.StateRoot, "sources"), MaxAge: d.Config.SourceCacheMaxAge,
		MaxBytes: d.Config.SourceCacheMaxBytes, Now: d.now}
}

// pruneSources bounds the source cache by age and size (it walks every
// entry, so it runs here, every ReapEvery, not in a job's path).
func (d *Daemon) pruneSources(ctx context.Context) {
	if d.Runner.StateRoot == "" {
		return
	}
	if err := d.sourceCache().Prune(ctx, d.now()); err != nil && ctx.Err() == nil {
		d.logger().Warn("prune the source cache", zap.Error(err))
	}
}

// reapLoop reaps orphans, collects old runs and prunes the source cache at
// start, every ReapEvery and when kicked.
func (d *Daemon) reapLoop(ctx context.Context) {
	t := time.NewTicker(d.Config.ReapEvery)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		if _, err := d.Reap(rctx); err != nil && ctx.Err() == nil {
			d.logger().Warn("orphan reaper", zap.Error(err))
		}
		cancel()
		d.collectRuns()
		d.pruneSources(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.reapKick:
		}
	}
}
