package daemon

import (
	"encoding/json"
	"fmt"
	"strconv"

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
