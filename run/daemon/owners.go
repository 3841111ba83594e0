package daemon

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Processes judges the processes named in instances' config
// (OwnedInstance.Process); cmd/jerichoci implements it over /proc
// (internal/procid).
type Processes interface {
	// Local reports whether process ran on this host.
	Local(process string) bool
	// Gone reports whether process is provably gone: of this host, and
	// no process of its pid and start time runs (or the host rebooted).
	Gone(process string) bool
}

// Presence is where the daemons of a fleet say that their process lives
// (the Queue, in the fleet's bucket; presence.go).
type Presence interface {
	// Beat says that process is alive now.
	Beat(ctx context.Context, process string) error
	// LastBeat returns when process last said so; false when it never did
	// (or stopped cleanly and said goodbye).
	LastBeat(ctx context.Context, process string) (time.Time, bool, error)
	// Leave removes process's presence (a clean stop).
	Leave(ctx context.Context, process string) error
}

// PresenceEvery is how often a daemon says that its process is alive;
// PresenceStale how long another host's process may stay silent before
// its instances are taken for orphans.
const (
	PresenceEvery = 10 * time.Second
	PresenceStale = 4 * PresenceEvery
)

// presenceLoop beats every PresenceEvery until ctx ends, then leaves.
func (d *Daemon) presenceLoop(ctx context.Context) {
	t := time.NewTicker(PresenceEvery)
	defer t.Stop()
	for {
		bctx, cancel := context.WithTimeout(ctx, d.Config.OpTimeout)
		if err := d.Presence.Beat(bctx, d.Config.Process); err != nil && ctx.Err() == nil {
			d.logger().Warn("say this process is alive", zap.Error(err))
		}
		cancel()
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = d.Presence.Leave(lctx, d.Config.Process) // its instances are gone or the reaper's
			cancel()
			return
		case <-t.C:
		}
	}
}

// ownerGone reports whether the process that created in is provably gone,
// and why (the reaper's log line):
//   - of this host, whatever its fleet: its pid no longer runs with its
//     start time (or the host rebooted since);
//   - of another host, of this fleet only, when the instance is older
//     than PresenceStale: it has not said it lives for PresenceStale.
//
// An instance of this process, without a process key, or whose process
// cannot be judged is never gone by this rule (the others still apply).
func (d *Daemon) ownerGone(ctx context.Context, in OwnedInstance) (bool, string, error) {
	if in.Process == "" || in.Process == d.Config.Process || d.Processes == nil {
		return false, "", nil
	}
	if d.Processes.Local(in.Process) {
		if d.Processes.Gone(in.Process) {
			return true, "reaped an instance whose process on this host is gone", nil
		}
		return false, "", nil
	}
	if d.Presence == nil || in.Fleet == "" || in.Fleet != d.Config.Fleet || in.Created.IsZero() ||
		d.now().Sub(in.Created) < PresenceStale {
		return false, "", nil
	}
	last, ok, err := d.Presence.LastBeat(ctx, in.Process)
	if err != nil {
		return false, "", err
	}
	if ok && d.now().Sub(last) < PresenceStale {
		return false, "", nil
	}
	return true, "reaped an instance whose process on another host has been silent for " + PresenceStale.String(), nil
}
