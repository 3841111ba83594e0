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

// settle answers for the attempt, in this order: decide (classify the
// outcome, unless the run did when it settled its record), write (the
// attempt's record under the state root, then, when the decision makes it
// final, the job's result), publish (run_finished) and only then reply to
// JetStream, as the decision says. Storing the result is an outcome of its
// own: when it does not succeed (the claim lost, another record first, the
// bucket failing), classify decides that outcome and its decision is the
// one obeyed. The heartbeat keeps the claim and the message alive until
// the write is done: stopHeartbeat ends it before the reply.
func (a *attempt) settle(res result, stopHeartbeat func()) {
	d := a.d
	defer d.unregister(a)
	defer stopHeartbeat() // idempotent; the normal path stops it below
	// Decide.
	res = a.classified(res)
	log := a.log.With(zap.Stringer("outcome", res.kind))
	// Write. A job refused before it ran keeps its result for a shorter time.
	a.unrun = res.rec == nil && res.kind == outcomeInvalid
	rec := a.record(res, log)
	final := false
	if res.dec.final {
		if stored, why := a.finalize(*rec); stored {
			final = true
		} else {
			res = a.classified(why)
			log = a.log.With(zap.Stringer("outcome", res.kind))
			if res.kind == outcomeStoreFailed {
				log.Error("store the final record", zap.Error(res.cause))
			}
			a.amend(rec, res.dec.message, log)
		}
	}
	stopHeartbeat() // the claim is finished, or about to be handed back
	dec := *res.dec
	// Publish.
	if rec != nil {
		a.sink.publishFinished(context.Background(), *rec, final)
	}
	// Reply.
	if dec.release {
		a.release(dec.message)
	}
	dead := dec.dead && final
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

// classified returns res with its decision: classify's, made once per
// outcome.
func (a *attempt) classified(res result) result {
	if res.dec == nil {
		dec := classify(res.kind, res.cause, a.delivered, a.d.Config)
		res.dec = &dec
	}
	return res
}

// record returns the attempt's record as the decision has it: the run's
// own (amended when the decision's message is not in it yet), or, for a
// final decision on a run that never started, a terminal record written
// now; nil when there is neither.
func (a *attempt) record(res result, log *zap.Logger) *model.RunRecord {
	dec := res.dec
	switch {
	case res.rec == nil && dec.final:
		// The state root is not a precondition: a record that cannot be
		// written there (a full disk) still goes to the results bucket.
		r, err := a.writeTerminal(dec.message)
		if err != nil {
			log.Error("write the final record under the state root; storing it in the results bucket all the same", zap.Error(err))
		}
		return &r
	case res.rec != nil && dec.message != "" && messageOf(*res.rec) != dec.message:
		a.amend(res.rec, dec.message, log)
	}
	return res.rec
}

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
// claim, then marks the claim finished. It returns true when rec is the
// job's result, else false with how storing it ended: outcomeSuperseded
// (another worker holds the job now), outcomeLostRace (the job had a
// result already) or outcomeStoreFailed.
func (a *attempt) finalize(rec model.RunRecord) (bool, result) {
	var outage time.Time
	for {
		stored, res, bucket := a.finalizeOnce(rec)
		// A bucket failing (an election, a cluster without quorum for a
		// while) is waited out with the heartbeat still running, rather
		// than the finished run thrown away and the job run again.
		if !bucket || !a.bearOutage(&outage, "store the job's result", res.cause) {
			return stored, res
		}
	}
}

// finalizeOnce is one try of finalize; bucket is true when a bucket
// failed (the try may be made again).
func (a *attempt) finalizeOnce(rec model.RunRecord) (stored bool, res result, bucket bool) {
	d := a.d
	ctx, cancel := d.opCtx()
	defer cancel()
	if mine := a.getClaim(); mine != nil {
		cur, err := getClaim(ctx, d.Jobs, a.key)
		if err != nil {
			return false, result{kind: outcomeStoreFailed, cause: err}, true
		}
		if cur == nil || cur.RunID != mine.RunID {
			return false, result{kind: outcomeSuperseded, cause: lostClaim(cur)}, false
		}
	}
	created, err := a.storeResult(ctx, rec)
	switch {
	case errors.As(err, new(bucketError)):
		return false, result{kind: outcomeStoreFailed, cause: err}, true
	case err != nil:
		return false, result{kind: outcomeStoreFailed, cause: err}, false
	case !created:
		return false, result{kind: outcomeLostRace}, false
	}
	a.markFinished(ctx, rec)
	return true, result{}, false
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
	created, err := createResultValue(ctx, d.Results, a.key, value, ttl)
	if err != nil {
		return false, bucketError{err}
	}
	return created, nil
}

// bucketError marks a failure of a bucket itself (worth another try), not
// of what was written; its message is the error's own.
type bucketError struct{ err error }

func (e bucketError) Error() string { return e.err.Error() }
func (e bucketError) Unwrap() error { return e.err }

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
