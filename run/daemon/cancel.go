package daemon

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// Cancel stops the job if this daemon runs it and marks the cancel request
// in its claim, so that whoever runs or next takes it stops too. The job
// ends with a failed record whose message is `cancelled`.
func (d *Daemon) Cancel(ctx context.Context, jobID string) (protocol.CancelReply, error) {
	if _, err := model.ParseJobID(jobID); err != nil {
		return protocol.CancelReply{}, fmt.Errorf("cancel: %w", err)
	}
	d.init()
	log := d.logger().With(zap.String("job_id", jobID))
	if a := d.activeAttempt(jobID); a != nil {
		log.Info("cancel requested; stopping the running job", zap.String("run_id", a.runID()))
		a.cancel(errCancelRequested)
	}
	var rep protocol.CancelReply
	wrote, err := changeClaim(ctx, d.Jobs, jobID, func(cur *claimEntry) (*protocol.Claim, error) {
		rep = protocol.CancelReply{JobID: jobID}
		switch {
		case cur == nil || (cur.State == protocol.ClaimCancelled && cur.RunID == ""):
			// Nobody has seen the job: the claim expires after PrecancelTTL,
			// so cancels of jobs that never come leave nothing behind. A job
			// in the work stream is really cancelled before it started; an
			// id nothing knows is said to be unknown (lookup.go), however
			// often it is cancelled.
			rep.State, rep.Message = protocol.ClaimCancelled, "cancelled before it started; the failed record is written when a worker takes the job"
			if cur != nil {
				rep.Message = "cancel already requested; the job has not started"
			}
			queued, err := d.queued(ctx, jobID)
			if err != nil {
				return nil, err
			}
			if !queued {
				if res, _ := d.Lookup(ctx, jobID); res.State == protocol.ClaimFinished {
					rep.State, rep.RunID, rep.Message = res.State, res.RunID, "already finished; nothing to cancel"
					return nil, nil
				}
				rep.State, rep.Message = protocol.ClaimUnknown, fmt.Sprintf(
					"unknown job: no job with this id is queued, running or finished (a mistyped id?); should one be published within %s, it is cancelled", d.Config.PrecancelTTL)
			}
			if cur != nil {
				return nil, nil // the cancel is there already
			}
			return &protocol.Claim{JobID: jobID, State: protocol.ClaimCancelled, CancelRequested: true, UpdatedAt: model.At(d.now())}, nil
		case cur.State == protocol.ClaimFinished:
			rep.State, rep.RunID, rep.Message = cur.State, cur.RunID, fmt.Sprintf("already finished (%s); nothing to cancel", cur.Status)
			return nil, nil
		case cur.CancelRequested:
			rep.State, rep.RunID, rep.Message = cur.State, cur.RunID, "cancel already requested"
			return nil, nil
		}
		next := cur.Claim
		next.CancelRequested = true
		rep.State, rep.RunID = cur.State, cur.RunID
		rep.Message = "cancel requested; the job stops and is recorded as cancelled"
		return &next, nil
	}, jetstream.KeyTTL(d.Config.PrecancelTTL))
	if err != nil {
		return protocol.CancelReply{}, fmt.Errorf("cancel %s: %w", jobID, err)
	}
	if wrote != nil {
		log.Info("cancel recorded", zap.String("state", string(rep.State)))
	}
	return rep, nil
}
