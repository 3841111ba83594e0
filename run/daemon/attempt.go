package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
	"jerichoci/sourcetar"
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
	target    *targets.Target // resolved at admission, or in the source's catalog
	// unknown is why the daemon's own catalog lacks the spec's lane or
	// target; the source's catalog may still define it.
	unknown error
	sink    *eventSink
	giveUp  bool // settle a message out of deliveries (GiveUp)
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
	// dec is classify's decision on kind, once made (the run makes it
	// when it settles its record, which then carries its message).
	dec *decision
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
	a.settle(res, stopHeartbeat)
	switch res.kind {
	case outcomeCancelled, outcomeInterrupted, outcomeInfra, outcomeSuperseded:
		// A job cut short may leave its instance behind (say, a delete
		// refused while the create still ran): look for orphans now.
		d.kickReaper()
	}
	return res.kind
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
		case errors.Is(err, ErrSourceNotFound), errors.Is(err, ErrSourceDigest), errors.Is(err, sourcetar.ErrUnusable),
			errors.Is(err, sourcetar.ErrRefused), errors.Is(err, ErrHostPathRefused):
			if a.unknown != nil {
				err = fmt.Errorf("%w (the job's source, whose %s could define it, is unusable: %v)", a.unknown, targets.DefaultFile, err)
			}
			return result{kind: outcomeInvalid, cause: err}
		}
		return result{kind: outcomeInfra, cause: err}
	}
	defer release() // the cache may prune the source once the run is over
	if err := a.resolveInSource(srcRoot); err != nil {
		a.log.Warn("invalid job: its lane or target in the source's catalog", zap.Error(err))
		return result{kind: outcomeInvalid, cause: err}
	}
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
			res, settled = a.classified(outcome()), true
			if res.dec.message != "" {
				markFailed(rec, res.dec.message, a.d.now())
			}
		},
	})
	if !settled {
		res = outcome() // the run ended before its record was settled
	}
	if err != nil && ctx.Err() == nil {
		// An outcome of its own: settle classifies it and amends the record.
		res = result{kind: outcomeInfra, cause: fmt.Errorf("run %s: %w", runID, err)}
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
		jf.Requester, jf.Lane, jf.Group = a.spec.Requester, a.spec.Lane, a.spec.Group
	}
	if !a.published.IsZero() {
		jf.EnqueuedAt = a.published.UTC().Format(time.RFC3339Nano)
	}
	return a.d.Runner.Store().WriteRunFile(runID, protocol.JobFileName, jf)
}
