package daemon

import (
	"errors"
	"fmt"
	"time"

	"jerichoci/internal/backoff"
	"jerichoci/run"
)

// outcomeKind is how one delivery of a job ended.
type outcomeKind int

const (
	// outcomeRan: the run ran and ended passed, failed or skipped.
	outcomeRan outcomeKind = iota
	// outcomeInvalid: the message can never succeed (invalid spec, unknown
	// lane or target, unusable source).
	outcomeInvalid
	// outcomeInfra: an infrastructure error (NATS, source download, the
	// executor's backend, the state directory).
	outcomeInfra
	// outcomeCancelled: a cancel request stopped the job (or came first).
	outcomeCancelled
	// outcomeDuplicate: the job already has its final record.
	outcomeDuplicate
	// outcomeInvalidRepeat: a poison message whose failed record exists.
	outcomeInvalidRepeat
	// outcomeInterrupted: the daemon stopped the job while shutting down.
	outcomeInterrupted
	// outcomeBusy: not started because the daemon is stopping or because
	// another live worker holds the job.
	outcomeBusy
	// outcomeSuperseded: this worker lost its claim (seen by the heartbeat,
	// or when it came to store the result); the new holder settles the
	// message.
	outcomeSuperseded
	// outcomeExhausted: the server stopped delivering the job (MaxDeliver)
	// and no worker finished it.
	outcomeExhausted
	// outcomeLostRace: storing the result found the job's final record
	// there already (another attempt stored it first).
	outcomeLostRace
	// outcomeStoreFailed: the result could not be stored (the claims or
	// results bucket failed).
	outcomeStoreFailed
)

var outcomeNames = map[outcomeKind]string{
	outcomeRan: "ran", outcomeInvalid: "invalid", outcomeInfra: "infrastructure_error", outcomeCancelled: "cancelled",
	outcomeDuplicate: "duplicate", outcomeInvalidRepeat: "invalid_repeat", outcomeInterrupted: "interrupted",
	outcomeBusy: "busy", outcomeSuperseded: "superseded", outcomeExhausted: "exhausted",
	outcomeLostRace: "lost_race", outcomeStoreFailed: "store_failed",
}

func (k outcomeKind) String() string { return outcomeNames[k] }

// action is the reply to JetStream.
type action string

const (
	actAck  action = "ack"  // DoubleAck: the message is done
	actTerm action = "term" // TermWithReason: never deliver again
	actNak  action = "nak"  // NakWithDelay: deliver again later
	actNone action = "none" // leave it to the worker that holds the claim
)

// decision is what a worker does after one delivery.
type decision struct {
	action action
	delay  time.Duration // actNak
	reason string        // actTerm
	// final: the attempt's record becomes the job's result.
	final bool
	// release: give the claim back (state queued) for the next delivery.
	release bool
	// message, when set, replaces the run record's message.
	message string
	// dead: the job ran out of deliveries; a dead letter says so.
	dead bool
}

// classify is the one place that maps an outcome to the JetStream reply
// and to the fate of the record. The first outcome of an attempt is how
// its run ended; when the decision makes the record final and storing it
// does not succeed, that is a second outcome (superseded, lost race, store
// failed) whose decision replaces the first. A decision's message goes
// into the attempt's record; "final" means the record becomes the job's
// result.
//
//	ran                 ack, final
//	invalid             term with the reason, final failed record
//	cancelled           ack, final failed record `cancelled`
//	duplicate           ack, no record (the job has its result)
//	invalid repeat      term, no record
//	infra, not last     nak with delay (doubling), claim released
//	infra, last         ack, final failed record that says it gave up, dead letter
//	interrupted         nak at once, claim released
//	busy                nak at once (while it waited for a live holder, InProgress every heartbeat)
//	superseded          nothing, record failed `superseded`: the new holder settles the message
//	exhausted           ack (delete), final failed record that says it gave up, dead letter
//	lost race           ack, record failed `superseded` (the job has its result)
//	store failed        nak with delay (doubling), claim released, record failed with the error
func classify(kind outcomeKind, cause error, delivered uint64, cfg DaemonConfig) decision {
	switch kind {
	case outcomeRan:
		return decision{action: actAck, final: true}
	case outcomeInvalid:
		return decision{action: actTerm, reason: errText(cause), final: true, message: errText(cause)}
	case outcomeCancelled:
		return decision{action: actAck, final: true, message: run.MsgCancelled}
	case outcomeDuplicate:
		return decision{action: actAck}
	case outcomeInvalidRepeat:
		return decision{action: actTerm, reason: errText(cause)}
	case outcomeInfra:
		max := uint64(cfg.MaxDeliver)
		if delivered >= max {
			return decision{action: actAck, final: true, dead: true, message: fmt.Sprintf(
				"infrastructure error on the last delivery (%d of %d), giving up: %s", delivered, max, errText(cause))}
		}
		return decision{action: actNak, delay: retryDelay(delivered, cfg), release: true, message: fmt.Sprintf(
			"infrastructure error on delivery %d of %d, the job goes back to the queue: %s", delivered, max, errText(cause))}
	case outcomeInterrupted:
		return decision{action: actNak, release: true,
			message: "interrupted: the daemon stopped while the job ran; the job goes back to the queue"}
	case outcomeBusy:
		return decision{action: actNak}
	case outcomeExhausted:
		return decision{action: actAck, final: true, dead: true, message: giveUpMessage(delivered)}
	case outcomeSuperseded:
		if !errors.Is(cause, errLostClaim) {
			cause = errLostClaim
		}
		return decision{action: actNone, message: "superseded: " + errText(cause) + "; this run is not the job's result"}
	case outcomeLostRace:
		return decision{action: actAck, message: "superseded: the job already has its final record; this run is not the job's result"}
	case outcomeStoreFailed:
		return decision{action: actNak, delay: retryDelay(delivered, cfg), release: true,
			message: "could not store the result, the job goes back to the queue: " + errText(cause)}
	}
	panic(fmt.Sprintf("classify: unknown outcome %d", kind))
}

// retryDelay is RetryDelay doubled for each earlier delivery, at most
// MaxRetryDelay.
func retryDelay(delivered uint64, cfg DaemonConfig) time.Duration {
	return backoff.Backoff{First: cfg.RetryDelay, Max: cfg.MaxRetryDelay}.Nth(delivered)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
