package daemon

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// acquire takes the job's claim. It returns false with the outcome when
// the job is done already, or held by a live worker while this daemon
// stops, or the bucket fails.
func (a *attempt) acquire() (bool, result) {
	d := a.d
	conflicts := 0
	for {
		if conflicts > 20 {
			return false, result{kind: outcomeInfra, cause: fmt.Errorf("claim %s: changed concurrently %d times", a.key, conflicts)}
		}
		ctx, cancel := d.opCtx()
		cur, err := getClaim(ctx, d.Jobs, a.key)
		cancel()
		if err != nil {
			return false, result{kind: outcomeInfra, cause: err}
		}
		now := d.now()
		next := protocol.Claim{JobID: a.key, State: protocol.ClaimRunning, RunID: model.NewRunID(now, d.newUUID()),
			Worker: a.worker, Attempt: a.delivered, StreamSeq: a.seq, UpdatedAt: model.At(now)}
		var got *claimEntry
		ctx, cancel = d.opCtx()
		switch {
		case cur == nil:
			got, err = createClaim(ctx, d.Jobs, next)
		case cur.State == protocol.ClaimFinished:
			cancel()
			a.log.Info("job already finished", zap.String("run_id", cur.RunID))
			return false, result{kind: outcomeDuplicate}
		case cur.State == protocol.ClaimQueued || cur.State == protocol.ClaimCancelled:
			next.CancelRequested = cur.CancelRequested || cur.State == protocol.ClaimCancelled
			got, err = updateClaim(ctx, d.Jobs, next, cur.rev)
		default: // running
			live := d.activeAttempt(a.key) != nil || time.Since(cur.written) < d.Config.staleAfter()
			if live && cur.StreamSeq != 0 && a.seq != 0 && cur.StreamSeq != a.seq {
				// A copy of a running job's message: the job's own message
				// settles it (it comes back if that attempt fails or dies),
				// so the copy takes no worker slot.
				cancel()
				a.log.Info("a copy of a running job's message; dropping it", zap.String("holder", cur.Worker),
					zap.String("run_id", cur.RunID), zap.Uint64("holder_stream_seq", cur.StreamSeq))
				return false, result{kind: outcomeDuplicate}
			}
			if live {
				cancel()
				a.log.Info("job held by a live worker; waiting for it", zap.String("holder", cur.Worker), zap.String("run_id", cur.RunID))
				if !a.waitForHolder() {
					return false, result{kind: outcomeBusy}
				}
				continue
			}
			next.CancelRequested = cur.CancelRequested
			a.log.Warn("taking over a job whose worker stopped answering", zap.String("previous_worker", cur.Worker),
				zap.String("previous_run_id", cur.RunID), zap.Duration("silent_for", time.Since(cur.written)))
			got, err = updateClaim(ctx, d.Jobs, next, cur.rev)
			if err == nil {
				d.kickReaper() // the previous attempt's instance is an orphan now
			}
		}
		cancel()
		switch {
		case errors.Is(err, errClaimConflict):
			conflicts++
			continue
		case err != nil:
			return false, result{kind: outcomeInfra, cause: err}
		}
		a.setClaim(got)
		if cur != nil {
			a.handedBack = cur.LastError
		}
		a.log = a.log.With(zap.String("run_id", got.RunID))
		return true, result{}
	}
}

// waitForHolder keeps this delivery alive for one heartbeat while another
// worker holds the job; false when the daemon stops meanwhile.
func (a *attempt) waitForHolder() bool {
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

// startHeartbeat sends InProgress and refreshes the claim every AckWait/3
// while the job runs. A claim that changed hands cancels the job; a cancel
// request found in the claim cancels it too.
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

func (a *attempt) refreshClaim() {
	ctx, cancel := a.d.opCtx()
	defer cancel()
	mine := a.getClaim()
	cur, err := getClaim(ctx, a.d.Jobs, a.key)
	if err != nil {
		a.log.Warn("refresh claim", zap.Error(err))
		return
	}
	if cur == nil || cur.State != protocol.ClaimRunning || cur.RunID != mine.RunID {
		a.log.Warn("lost the job's claim; stopping this run")
		a.cancel(lostClaim(cur))
		return
	}
	if cur.CancelRequested {
		a.cancel(errCancelRequested)
	}
	next := cur.Claim
	next.UpdatedAt = model.At(a.d.now())
	got, err := updateClaim(ctx, a.d.Jobs, next, cur.rev)
	if err == nil {
		a.setClaim(got)
	} else if !errors.Is(err, errClaimConflict) {
		a.log.Warn("refresh claim", zap.Error(err))
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
	for i := 0; i < 5; i++ {
		cur, err := getClaim(ctx, a.d.Jobs, a.key)
		if err != nil {
			a.log.Warn("release claim", zap.Error(err))
			return
		}
		if cur == nil || cur.State != protocol.ClaimRunning || cur.RunID != mine.RunID {
			return
		}
		next := cur.Claim
		next.State, next.UpdatedAt, next.LastError = protocol.ClaimQueued, model.At(a.d.now()), truncate(why, 4096)
		if _, err = updateClaim(ctx, a.d.Jobs, next, cur.rev); !errors.Is(err, errClaimConflict) {
			if err != nil {
				a.log.Warn("release claim", zap.Error(err))
			}
			return
		}
	}
}
