package daemon

import (
	"time"

	"jerichoci/model"
)

// Observer sees what the daemon does, for metrics; the daemon calls it
// from its workers, so it must be safe for concurrent use. Nil observes
// nothing.
type Observer interface {
	// RunStarted: an attempt starts running target's plan.
	RunStarted(target string)
	// Settled: a delivery was settled (acked, nak'ed or terminated).
	Settled(s Settlement)
	// Reaped: the reaper deleted n orphan instances.
	Reaped(n int)
}

// Settlement is one settled delivery.
type Settlement struct {
	// Target is the lane's target id, "" when the spec did not resolve.
	Target string
	// Action is "ack", "nak" or "term".
	Action string
	// Final: the record is the job's final record.
	Final bool
	// Dead: the job was given up and a dead letter written.
	Dead bool
	// Record is the attempt's record, nil when there is none.
	Record *model.RunRecord
	// Published is when the job message was published (zero if unknown).
	Published time.Time
}

// Busy is how many workers are running an attempt now.
func (d *Daemon) Busy() int { return d.activeCount() }

func (a *attempt) observeSettled(action string, final, dead bool, rec *model.RunRecord) {
	o := a.d.Observer
	if o == nil {
		return
	}
	s := Settlement{Action: action, Final: final, Dead: dead, Record: rec, Published: a.published}
	if a.target != nil {
		s.Target = a.target.ID
	}
	o.Settled(s)
}
