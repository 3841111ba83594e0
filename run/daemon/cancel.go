package daemon

import (
	"context"
	"errors"
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
	for i := 0; i < 20; i++ {
		cur, err := getClaim(ctx, d.Jobs, jobID)
		if err != nil {
			return protocol.CancelReply{}, fmt.Errorf("cancel %s: %w", jobID, err)
		}
		rep := protocol.CancelReply{JobID: jobID}
		switch {
		case cur == nil:
			// Nobody has seen the job: the claim expires after PrecancelTTL,
			// so cancels of jobs that never come leave nothing behind.
			_, err = createClaim(ctx, d.Jobs, protocol.Claim{JobID: jobID, State: protocol.ClaimCancelled, CancelRequested: true,
				UpdatedAt: model.At(d.now())}, jetstream.KeyTTL(d.Config.PrecancelTTL))
			rep.State, rep.Message = protocol.ClaimCancelled, fmt.Sprintf(
				"cancelled before it started; the failed record is written when a worker takes the job (if it is published within %s)", d.Config.PrecancelTTL)
		case cur.State == protocol.ClaimFinished:
			return protocol.CancelReply{JobID: jobID, State: cur.State, RunID: cur.RunID,
				Message: fmt.Sprintf("already finished (%s); nothing to cancel", cur.Status)}, nil
		case cur.CancelRequested:
			return protocol.CancelReply{JobID: jobID, State: cur.State, RunID: cur.RunID, Message: "cancel already requested"}, nil
		default:
			next := cur.Claim
			next.CancelRequested = true
			_, err = updateClaim(ctx, d.Jobs, next, cur.rev)
			rep.State, rep.RunID = cur.State, cur.RunID
			rep.Message = "cancel requested; the job stops and is recorded as cancelled"
		}
		if errors.Is(err, errClaimConflict) {
			continue
		}
		if err != nil {
			return protocol.CancelReply{}, fmt.Errorf("cancel %s: %w", jobID, err)
		}
		log.Info("cancel recorded", zap.String("state", string(rep.State)))
		return rep, nil
	}
	return protocol.CancelReply{}, fmt.Errorf("cancel %s: the claim changed concurrently too often", jobID)
}
