package daemon

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
	"jerichoci/targets"
)

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
		invalid = d.admit(a, spec)
	}

	var (
		prior  *model.RunRecord
		err    error
		outage time.Time
	)
	for {
		ctx, cancel := d.opCtx()
		prior, err = getResult(ctx, d.Results, a.key)
		cancel()
		if err == nil || !a.bearOutage(&outage, "look up the job's result", err) {
			break
		}
	}
	switch {
	case err != nil && d.isStopping():
		return result{kind: outcomeBusy}, noop
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

// admit checks the spec's runtime override and resolves its lane or
// target against the daemon's own catalog. A name that catalog lacks is
// no refusal yet: the job's source may define it (resolveInSource), so
// a.unknown keeps the error for when it does not.
func (d *Daemon) admit(a *attempt, spec model.JobSpec) error {
	if err := checkRuntime(spec); err != nil {
		return err
	}
	t, err := lookup(d.Catalog, spec)
	switch {
	case err == nil:
		a.target = &t
	case errors.Is(err, targets.ErrUnknownTarget):
		a.unknown = err
	default:
		return err
	}
	return nil
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
