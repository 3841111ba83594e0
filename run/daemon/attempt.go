package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
	"jerichoci/targets"
)

// attempt is one delivery of one job to one worker.
type attempt struct {
	d         *Daemon
	msg       Message
	worker    string
	delivered uint64
	seq       uint64
	// published is when the message was published, from its metadata
	// (zero if unknown).
	published time.Time
	base      *zap.Logger // worker and delivery fields
	log       *zap.Logger // base plus job_id and run_id
	key       string      // the job id (or a stand-in for a spec without one)
	spec      *model.JobSpec
	target    *targets.Target
	sink      *eventSink
	giveUp    bool // settle a message out of deliveries (GiveUp)
	// unrun: the job was refused before it ran (its result gets
	// DaemonConfig.UnrunResultTTL).
	unrun bool

	jobCtx context.Context
	cancel context.CancelCauseFunc

	// handedBack is the error an earlier attempt handed the job back with
	// (its claim's last_error), for the dead letter.
	handedBack string

	mu    sync.Mutex
	claim *claimEntry
}

// result is what an attempt ended with, before classification.
type result struct {
	kind  outcomeKind
	cause error
	rec   *model.RunRecord // the attempt's record on disk, if one was written
	// settled is the message the Runner already wrote into rec, as
	// classify decided it when the run ended (no second write for it).
	settled string
}

// process handles one delivery and returns how it ended.
func (d *Daemon) process(msg Message, worker string, log *zap.Logger) outcomeKind {
	a := &attempt{d: d, msg: msg, worker: worker, delivered: 1}
	if meta, err := msg.Metadata(); err == nil {
		a.delivered, a.seq, a.published = meta.NumDelivered, meta.Sequence.Stream, meta.Timestamp
	}
	a.jobCtx, a.cancel = context.WithCancelCause(d.killCtx)
	defer a.cancel(nil)
	a.base = log.With(zap.Uint64("stream_seq", a.seq), zap.Uint64("delivery", a.delivered))
	a.log = a.base
	res, stopHeartbeat := a.take()
	stopHeartbeat()
	a.settle(res)
	switch res.kind {
	case outcomeCancelled, outcomeInterrupted, outcomeInfra, outcomeSuperseded:
		// A job cut short may leave its instance behind (say, a delete
		// refused while the create still ran): look for orphans now.
		d.kickReaper()
	}
	return res.kind
}

// take handles the delivery up to its outcome: decode, fence, run. The
// returned func stops the heartbeat, which runs while the claim is held.
func (a *attempt) take() (result, func()) {
	d := a.d
	noop := func() {}
	spec, invalid := model.ParseJobSpec(a.msg.Data())
	if invalid == nil {
		a.spec, a.key = &spec, spec.JobID.String()
	} else {
		a.key = keyFromMessage(a.msg, a.seq)
	}
	a.log = a.log.With(zap.String("job_id", a.key))
	a.sink = &eventSink{pub: d.Events, jobKey: a.key, log: a.log, limit: d.recordLimit()}
	if invalid == nil {
		if t, err := d.resolve(spec); err != nil {
			invalid = err
		} else {
			a.target = &t
		}
	}

	ctx, cancel := d.opCtx()
	prior, err := getResult(ctx, d.Results, a.key)
	cancel()
	switch {
	case err != nil:
		return result{kind: outcomeInfra, cause: err}, noop
	case prior != nil && invalid != nil:
		return result{kind: outcomeInvalidRepeat, cause: invalid}, noop
	case prior != nil:
		a.log.Info("job already has its final record", zap.String("run_id", prior.RunID))
		return result{kind: outcomeDuplicate}, noop
	}
	if held, res := a.acquire(); !held {
		return res, noop
	}
	d.register(a)
	stop := a.startHeartbeat()
	if invalid != nil {
		a.log.Warn("invalid job", zap.Error(invalid))
		return result{kind: outcomeInvalid, cause: invalid}, stop
	}
	if a.getClaim().CancelRequested {
		return result{kind: outcomeCancelled, cause: errCancelRequested}, stop
	}
	if a.giveUp {
		return result{kind: outcomeExhausted}, stop
	}
	return a.runPlan(), stop
}

// resolve finds the spec's lane or target and checks its runtime override.
func (d *Daemon) resolve(spec model.JobSpec) (targets.Target, error) {
	var t targets.Target
	var err error
	if spec.Lane != "" {
		t, err = d.Catalog.LookupLane(spec.Lane)
		if err != nil {
			if _, terr := d.Catalog.Lookup(spec.Lane); terr == nil {
				err = fmt.Errorf("%w: no lane has this title, but a target has this id: send it as `target`", err)
			}
		}
	} else {
		t, err = d.Catalog.Lookup(spec.Target)
	}
	if err != nil {
		return t, err
	}
	if rt := spec.Runtime; rt != nil && rt.Kind != model.RuntimeIncus {
		return t, fmt.Errorf("field `runtime`: kind %q: this daemon runs jobs in Incus only; expected \"incus\"", rt.Kind)
	}
	return t, nil
}

// keyFromMessage names a message whose spec does not decode: its
// Nats-Msg-Id, else a job_id it still has, else its stream sequence.
func keyFromMessage(m Message, seq uint64) string {
	if id := m.Headers().Get("Nats-Msg-Id"); protocol.ValidJobKey(id) {
		return id
	}
	var loose struct {
		JobID string `json:"job_id"`
	}
	if json.Unmarshal(m.Data(), &loose) == nil && protocol.ValidJobKey(loose.JobID) {
		return loose.JobID
	}
	return "seq-" + strconv.FormatUint(seq, 10)
}

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

// runPlan fetches the source and runs the plan with the Runner.
func (a *attempt) runPlan() result {
	d := a.d
	ctx := a.jobCtx
	srcRoot, release, err := a.sourceRoot(ctx)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return a.cancelled(nil)
		case errors.Is(err, ErrSourceNotFound), errors.Is(err, ErrSourceDigest), errors.Is(err, run.ErrSourceUnusable),
			errors.Is(err, run.ErrSourceRefused), errors.Is(err, ErrHostPathRefused):
			return result{kind: outcomeInvalid, cause: err}
		}
		return result{kind: outcomeInfra, cause: err}
	}
	defer release() // the cache may prune the source once the run is over
	var git run.GitState
	if a.spec.GitHead != "" {
		h := a.spec.GitHead
		git.Head = &h
	}
	plan := run.NewPlan(*a.target, srcRoot, git, a.spec.ChangedFiles)
	applyRuntime(&plan, a.spec.Runtime)
	runID := a.runID()
	if err := a.writeJobFile(runID); err != nil {
		return result{kind: outcomeInfra, cause: err}
	}
	watch := &run.InfraWatch{JobExecutor: d.NewExecutor(OwnerPrefix + a.key + "/" + a.worker)}
	// outcome is how the run ended, known once its jobs are over.
	outcome := func() result {
		if ctx.Err() != nil {
			return a.cancelled(nil)
		}
		if werr := watch.Err(); werr != nil {
			return result{kind: outcomeInfra, cause: werr}
		}
		return result{kind: outcomeRan}
	}
	var (
		res     result
		settled bool
	)
	a.log.Info("run started", zap.String("target", plan.TargetID))
	if o := d.Observer; o != nil {
		o.RunStarted(plan.TargetID)
	}
	// Log fields: job_id is always the spec's job id, job the catalog job
	// (the runner's). The final record carries classify's decision.
	rec, err := d.Runner.Run(ctx, plan, run.RunOptions{
		RunID: runID, Exec: watch, Events: a.sink,
		JobOutput: func(job string) io.Writer {
			if d.Events == nil {
				return nil
			}
			return newLogChunker(d.Events, a.key, runID, job, a.log)
		},
		Log: a.base.Named("run").With(zap.String("job_id", a.key)),
		Settle: func(rec *model.RunRecord) {
			res, settled = outcome(), true
			if dec := classify(res.kind, res.cause, a.delivered, d.Config); dec.message != "" {
				markFailed(rec, dec.message, a.d.now())
				res.settled = dec.message
			}
		},
	})
	if !settled {
		res = outcome() // the run ended before its record was settled
	}
	if err != nil && ctx.Err() == nil {
		res = result{kind: outcomeInfra, cause: fmt.Errorf("run %s: %w", runID, err), settled: res.settled}
	}
	res.rec = &rec
	return res
}

// cancelled maps the job context's cause to the outcome.
func (a *attempt) cancelled(rec *model.RunRecord) result {
	cause := context.Cause(a.jobCtx)
	switch {
	case errors.Is(cause, errCancelRequested):
		return result{kind: outcomeCancelled, cause: cause, rec: rec}
	case errors.Is(cause, errLostClaim):
		return result{kind: outcomeSuperseded, cause: cause, rec: rec}
	}
	return result{kind: outcomeInterrupted, cause: cause, rec: rec}
}

// applyRuntime lays the spec's Incus runtime over the plan's Incus jobs.
func applyRuntime(p *run.Plan, rt *model.RuntimeConfig) {
	if rt == nil || rt.Kind != model.RuntimeIncus || rt.Incus == nil {
		return
	}
	for i := range p.Jobs {
		j := &p.Jobs[i]
		if !j.Runtime.IsIncus() {
			continue
		}
		in := model.IncusRuntime{InstanceType: model.InstanceAuto}
		if j.Runtime.Incus != nil {
			in = *j.Runtime.Incus
		}
		if rt.Incus.GuestRole != "" {
			in.GuestRole = rt.Incus.GuestRole
		}
		if rt.Incus.InstanceType != "" {
			in.InstanceType = rt.Incus.InstanceType
		}
		j.Runtime.Incus = &in
	}
}

func (a *attempt) sourceRoot(ctx context.Context) (string, func(), error) {
	src := a.spec.Source
	switch src.Kind {
	case model.SourceHostPath:
		dir, err := ResolveHostPath(a.d.Config.HostPathRoot, src.Path)
		return dir, noRelease, err
	case model.SourceObjectStore:
		if a.d.Sources == nil {
			return "", noRelease, fmt.Errorf("source %s in %s: this daemon has no object store: %w", src.Object, src.Bucket, ErrSourceNotFound)
		}
		return fetchSource(ctx, a.d.Sources, a.d.sourceCache(), a.d.Config.SourceLimits, src.Bucket, src.Object, src.SHA256)
	}
	return "", noRelease, fmt.Errorf("source kind %q: %w", src.Kind, ErrSourceNotFound)
}

func (a *attempt) writeJobFile(runID string) error {
	jf := protocol.JobFile{JobID: a.key, Worker: a.worker, Delivery: a.delivered, StreamSeq: a.seq}
	if a.spec != nil {
		jf.Requester = a.spec.Requester
	}
	if !a.published.IsZero() {
		jf.EnqueuedAt = a.published.UTC().Format(time.RFC3339Nano)
	}
	return a.d.Runner.Store().WriteRunFile(runID, protocol.JobFileName, jf)
}

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
	// The result is what counts; marking the claim finished lets a
	// republished spec be acked without a look at the results.
	for i := 0; i < 5; i++ {
		cur, err := getClaim(ctx, d.Jobs, a.key)
		if err != nil {
			break
		}
		next := protocol.Claim{JobID: a.key, State: protocol.ClaimFinished, RunID: rec.RunID, Worker: a.worker, Attempt: a.delivered,
			Status: rec.Status, UpdatedAt: model.At(d.now())}
		if cur == nil {
			_, err = createClaim(ctx, d.Jobs, next)
		} else {
			next.CancelRequested = cur.CancelRequested
			_, err = updateClaim(ctx, d.Jobs, next, cur.rev)
		}
		if !errors.Is(err, errClaimConflict) {
			break
		}
	}
	if err != nil && !errors.Is(err, errClaimConflict) {
		a.log.Warn("mark claim finished", zap.Error(err))
	}
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
