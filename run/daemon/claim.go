package daemon

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// Reasons acquire writes no claim.
var (
	// errNotNeeded: the job is finished, or this is a copy of a running
	// job's message.
	errNotNeeded = errors.New("the job needs no worker")
	// errHolderLive: another live worker holds the job.
	errHolderLive = errors.New("the job is held by a live worker")
)

// acquire takes the job's claim. It returns false with the outcome when
// the job is done already, or held by a live worker while this daemon
// stops, or the claims bucket keeps failing (outageBound).
//
// A running claim is taken over only when its worker is provably silent:
// its last write is older than the stale window, and this delivery has
// itself watched it stay unchanged for TakeoverAfter while the bucket
// answered. After an outage of the bucket (an election) or of the
// holder's connection, the holder's next heartbeat lands within that
// window, and the job keeps its worker.
func (a *attempt) acquire() (bool, result) {
	d := a.d
	var (
		silent silence
		outage time.Time // when the bucket began failing this delivery
	)
	for {
		var prev *claimEntry // the claim this one replaces
		takeover := false
		ctx, cancel := d.opCtx()
		got, err := changeClaim(ctx, d.Jobs, a.key, func(cur *claimEntry) (*protocol.Claim, error) {
			prev, takeover = cur, false
			now := d.now()
			next := protocol.Claim{JobID: a.key, State: protocol.ClaimRunning, RunID: model.NewRunID(now, d.newUUID()),
				Worker: a.worker, Attempt: a.delivered, StreamSeq: a.seq, UpdatedAt: model.At(now)}
			switch {
			case cur == nil:
			case cur.State == protocol.ClaimFinished:
				a.log.Info("job already finished", zap.String("run_id", cur.RunID))
				return nil, errNotNeeded
			case cur.State == protocol.ClaimQueued || cur.State == protocol.ClaimCancelled:
				next.CancelRequested = cur.CancelRequested || cur.State == protocol.ClaimCancelled
			default: // running
				fresh := d.activeAttempt(a.key) != nil || time.Since(cur.written) < d.Config.staleAfter()
				if fresh && cur.StreamSeq != 0 && a.seq != 0 && cur.StreamSeq != a.seq {
					// A copy of a running job's message: the job's own message
					// settles it (it comes back if that attempt fails or dies),
					// so the copy takes no worker slot.
					a.log.Info("a copy of a running job's message; dropping it", zap.String("holder", cur.Worker),
						zap.String("run_id", cur.RunID), zap.Uint64("holder_stream_seq", cur.StreamSeq))
					return nil, errNotNeeded
				}
				if fresh {
					a.log.Info("job held by a live worker; waiting for it", zap.String("holder", cur.Worker), zap.String("run_id", cur.RunID))
					return nil, errHolderLive
				}
				watched, first := silent.watch(cur.rev)
				if first {
					a.log.Info("the job's worker is silent; watching its claim before taking over", zap.String("holder", cur.Worker),
						zap.String("run_id", cur.RunID), zap.Duration("silent_for", time.Since(cur.written)),
						zap.Duration("watch", d.Config.takeoverAfter()))
				}
				if watched < d.Config.takeoverAfter() {
					return nil, errHolderLive
				}
				next.CancelRequested = cur.CancelRequested
				a.log.Warn("taking over a job whose worker stopped answering", zap.String("previous_worker", cur.Worker),
					zap.String("previous_run_id", cur.RunID), zap.Duration("silent_for", time.Since(cur.written)))
				takeover = true
			}
			return &next, nil
		})
		cancel()
		switch {
		case errors.Is(err, errNotNeeded):
			return false, result{kind: outcomeDuplicate}
		case errors.Is(err, errHolderLive):
			outage = time.Time{}
			if !a.waitBeat() {
				return false, result{kind: outcomeBusy}
			}
			continue
		case err != nil:
			if a.bearOutage(&outage, "take the job's claim", err) {
				continue
			}
			if d.isStopping() {
				return false, result{kind: outcomeBusy}
			}
			return false, result{kind: outcomeInfra, cause: err}
		}
		if takeover {
			d.kickReaper() // the previous attempt's instance is an orphan now
		}
		a.setClaim(got)
		if prev != nil {
			a.handedBack = prev.LastError
		}
		a.log = a.log.With(zap.String("run_id", got.RunID))
		return true, result{}
	}
}

// bearOutage is the answer to a bucket that failed this delivery: true
// after one heartbeat's pause (the message kept in progress) while the
// failures have lasted less than outageBound; false when they lasted
// longer or the daemon stops. *since is when they began.
func (a *attempt) bearOutage(since *time.Time, what string, err error) bool {
	if since.IsZero() {
		*since = time.Now()
	}
	failing := time.Since(*since)
	if failing >= a.d.Config.outageBound() {
		return false
	}
	a.log.Warn(what+": the bucket failed; trying again", zap.Error(err), zap.Duration("failing_for", failing))
	return a.waitBeat()
}

// waitBeat keeps this delivery alive for one heartbeat (another worker
// holds the job, or a bucket is failing); false when the daemon stops
// meanwhile.
func (a *attempt) waitBeat() bool {
	select {
	case <-a.d.stopping:
		return false
	case <-a.jobCtx.Done():
		return false
	case <-time.After(a.d.Config.heartbeat()):
	}
	if err := a.msg.InProgress(); err != nil {
		a.log.Warn("in progress", zap.Error(err))
	}
	return !a.d.isStopping()
}

func (a *attempt) getClaim() *claimEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.claim
}

func (a *attempt) setClaim(c *claimEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.claim = c
}

func (a *attempt) runID() string {
	if c := a.getClaim(); c != nil {
		return c.RunID
	}
	return ""
}

// startHeartbeat sends InProgress and refreshes the claim every heartbeat
// while the job runs and until its result is stored (settle stops it). A
// claim that changed hands cancels the job; a cancel request found in the
// claim cancels it too.
func (a *attempt) startHeartbeat() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(a.d.Config.heartbeat())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if err := a.msg.InProgress(); err != nil {
				a.log.Warn("in progress", zap.Error(err))
			}
			a.refreshClaim()
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// refreshClaim marks the claim fresh, if still this attempt's; it cancels
// the job when the claim changed hands or asks for a cancel.
func (a *attempt) refreshClaim() {
	ctx, cancel := a.d.beatCtx()
	defer cancel()
	mine := a.getClaim()
	got, err := changeClaim(ctx, a.d.Jobs, a.key, func(cur *claimEntry) (*protocol.Claim, error) {
		if cur != nil && cur.State == protocol.ClaimFinished && cur.RunID == mine.RunID {
			return nil, nil // settled with this run's record: nothing to keep fresh
		}
		if cur == nil || cur.State != protocol.ClaimRunning || cur.RunID != mine.RunID {
			return nil, lostClaim(cur)
		}
		if cur.CancelRequested {
			a.cancel(errCancelRequested)
		}
		next := cur.Claim
		next.UpdatedAt = model.At(a.d.now())
		return &next, nil
	})
	switch {
	case errors.Is(err, errLostClaim):
		a.log.Warn("lost the job's claim; stopping this run")
		a.cancel(err)
	case err != nil:
		a.log.Warn("refresh claim", zap.Error(err))
	case got != nil:
		a.setClaim(got)
	}
}

// release gives the claim back for the next delivery, if still ours.
func (a *attempt) release(why string) {
	mine := a.getClaim()
	if mine == nil {
		return
	}
	ctx, cancel := a.d.opCtx()
	defer cancel()
	_, err := changeClaim(ctx, a.d.Jobs, a.key, func(cur *claimEntry) (*protocol.Claim, error) {
		if cur == nil || cur.State != protocol.ClaimRunning || cur.RunID != mine.RunID {
			return nil, nil
		}
		next := cur.Claim
		next.State, next.UpdatedAt, next.LastError = protocol.ClaimQueued, model.At(a.d.now()), truncate(why, 4096)
		return &next, nil
	})
	if err != nil {
		a.log.Warn("release claim", zap.Error(err))
	}
}

// markFinished marks the claim finished with rec's run once rec is the
// job's result: a republished spec is then acked without a look at the
// results. The result is what counts, so a failure is only logged.
func (a *attempt) markFinished(ctx context.Context, rec model.RunRecord) {
	_, err := changeClaim(ctx, a.d.Jobs, a.key, func(cur *claimEntry) (*protocol.Claim, error) {
		next := protocol.Claim{JobID: a.key, State: protocol.ClaimFinished, RunID: rec.RunID, Worker: a.worker, Attempt: a.delivered,
			Status: rec.Status, UpdatedAt: model.At(a.d.now())}
		if cur != nil {
			next.CancelRequested = cur.CancelRequested
		}
		return &next, nil
	})
	if err != nil {
		a.log.Warn("mark claim finished", zap.Error(err))
	}
}
