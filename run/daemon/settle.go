package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// settle classifies the outcome, makes the record durable, stores the
// final one and only then answers JetStream.
func (a *attempt) settle(res result) {
	d := a.d
	defer d.unregister(a)
	dec := classify(res.kind, res.cause, a.delivered, d.Config)
	log := a.log.With(zap.Stringer("outcome", res.kind))
	rec := res.rec
	// A job refused before it ran keeps its record for a shorter time.
	a.unrun = res.rec == nil && res.kind == outcomeInvalid
	if rec == nil && dec.final {
		// The state root is not a precondition: a record that cannot be
		// written there (a full disk) still goes to the results bucket.
		r, err := a.writeTerminal(dec.message)
		if err != nil {
			log.Error("write the final record under the state root; storing it in the results bucket all the same", zap.Error(err))
		}
		rec = &r
	} else if rec != nil && dec.message != "" && dec.message != res.settled {
		a.amend(rec, dec.message, log)
	}
	final := false
	if dec.final && rec != nil {
		won, err := a.finalize(*rec)
		switch {
		case errors.Is(err, errLostClaim):
			dec = classify(outcomeSuperseded, err, a.delivered, d.Config)
			a.amend(rec, dec.message, log)
		case err != nil:
			log.Error("store the final record; the job goes back to the queue", zap.Error(err))
			dec = decision{action: actNak, delay: retryDelay(a.delivered, d.Config), release: true}
			a.amend(rec, "could not store the result, the job goes back to the queue: "+err.Error(), log)
		case !won:
			dec = decision{action: actAck}
			a.amend(rec, "superseded: the job already has its final record; this run is not the job's result", log)
		default:
			final = true
		}
	}
	if rec != nil {
		a.sink.publishFinished(context.Background(), *rec, final)
	}
	if dec.release {
		a.release(dec.message)
	}
	dead := dec.dead && final && rec != nil
	if dead {
		a.deadLetter(*rec, res.cause)
	}
	ctx, cancel := d.opCtx()
	defer cancel()
	var err error
	switch dec.action {
	case actAck:
		err = a.msg.DoubleAck(ctx)
	case actTerm:
		err = a.msg.TermWithReason(truncate(dec.reason, 1024))
	case actNak:
		if dec.delay > 0 {
			err = a.msg.NakWithDelay(dec.delay)
		} else {
			err = a.msg.Nak()
		}
	}
	a.observeSettled(string(dec.action), final, dead, rec)
	fields := []zap.Field{zap.String("action", string(dec.action)), zap.Duration("delay", dec.delay), zap.Bool("final", final)}
	if rec != nil {
		fields = append(fields, zap.String("run_id", rec.RunID), zap.String("status", string(rec.Status)))
	}
	if err != nil {
		log.Warn("reply to the message", append(fields, zap.Error(err))...)
		return
	}
	log.Info("job settled", fields...)
}

// amend rewrites the attempt's run.json with a failed status and msg.
// amend rewrites the attempt's run.json with a failed status and msg: for
// decisions taken after the run's own record was written (the result
// could not be stored, or another attempt took the job over).
func (a *attempt) amend(rec *model.RunRecord, msg string, log *zap.Logger) {
	markFailed(rec, msg, a.d.now())
	if err := a.d.Runner.Store().WriteRun(*rec); err != nil {
		log.Error("rewrite run record", zap.Error(err))
	}
}

// markFailed makes rec a failed record with msg.
func markFailed(rec *model.RunRecord, msg string, now time.Time) {
	rec.Status = model.StatusFailed
	rec.Message = &msg
	if rec.FinishedAt == nil {
		rec.FinishedAt = model.TimestampPtr(now)
	}
}

// writeTerminal records a run that never started (failed, no jobs: the
// shape of docs/CONTRACTS.md, "Early failure") and emits its run_started.
func (a *attempt) writeTerminal(msg string) (model.RunRecord, error) {
	now := a.d.now()
	runID := a.runID()
	if runID == "" {
		runID = model.NewRunID(now, a.d.newUUID())
	}
	rec := model.RunRecord{RunID: runID, Status: model.StatusFailed, CreatedAt: model.At(now),
		FinishedAt: model.TimestampPtr(now), ChangedFiles: []string{}, Filters: []string{},
		PrepareTimings: []model.PrepareTimingRecord{}, Jobs: []model.JobRecord{}, Message: &msg}
	if a.spec != nil {
		name := a.spec.Name()
		rec.TargetID = &name
		if a.spec.GitHead != "" {
			h := a.spec.GitHead
			rec.GitHead = &h
		}
		if a.spec.ChangedFiles != nil {
			rec.ChangedFiles = append(rec.ChangedFiles, a.spec.ChangedFiles...)
		}
		if a.spec.Source.Kind == model.SourceHostPath {
			rec.SourceRoot = a.spec.Source.Path
		}
	}
	if a.target != nil {
		rec.TargetID, rec.TargetDescription = strPtr(a.target.ID), strPtr(a.target.Description)
		rec.Filters = append(rec.Filters, a.target.Filters...)
	}
	a.sink.Emit(context.Background(), model.RunStartedEvent(&rec))
	if err := a.writeJobFile(runID); err != nil {
		return rec, err
	}
	return rec, a.d.Runner.Store().WriteRun(rec)
}

// finalize stores rec as the job's result if this attempt still holds the
// claim, then marks the claim finished. won is false when the job already
// had a result; errLostClaim when another worker holds the job now.
func (a *attempt) finalize(rec model.RunRecord) (bool, error) {
	d := a.d
	ctx, cancel := d.opCtx()
	defer cancel()
	mine := a.getClaim()
	if mine != nil {
		cur, err := getClaim(ctx, d.Jobs, a.key)
		if err != nil {
			return false, err
		}
		if cur == nil || cur.RunID != mine.RunID {
			return false, lostClaim(cur)
		}
	}
	created, err := a.storeResult(ctx, rec)
	if err != nil || !created {
		return false, err
	}
	a.markFinished(ctx, rec)
	return true, nil
}

// storeResult creates the job's result: the record, or, when it is too
// large for a value, the whole record in the records store and a trimmed
// copy that points at it. false when the job already has a result.
func (a *attempt) storeResult(ctx context.Context, rec model.RunRecord) (bool, error) {
	d := a.d
	marker := protocol.RecordMarker{}
	full, err := compactRecord(rec)
	if err != nil {
		return false, err
	}
	if len(full) > d.recordLimit() && d.Records != nil {
		name := protocol.RecordObjectName(a.key)
		if err := d.Records.PutRecord(ctx, name, full); err != nil {
			// The trimmed record still says what happened.
			a.log.Error("store the whole oversized record", zap.Int("bytes", len(full)), zap.Error(err))
		} else {
			marker.Bucket, marker.Object = protocol.BucketRecords, name
		}
	}
	value, trimmed, err := fitRecord(rec, d.recordLimit(), marker)
	if err != nil {
		return false, err
	}
	if trimmed {
		a.log.Warn("run record too large for the results bucket; stored trimmed", zap.Int("bytes", len(full)),
			zap.Int("limit", d.recordLimit()), zap.String("whole_record", marker.Object))
	}
	var ttl time.Duration
	if a.unrun {
		ttl = d.Config.UnrunResultTTL
	}
	return createResultValue(ctx, d.Results, a.key, value, ttl)
}

// lostClaim is errLostClaim naming the attempt that holds the job now.
func lostClaim(cur *claimEntry) error {
	if cur == nil || cur.RunID == "" {
		return fmt.Errorf("%w (its claim is gone)", errLostClaim)
	}
	return fmt.Errorf("%w: run %s on %s (%s)", errLostClaim, cur.RunID, cur.Worker, cur.State)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
