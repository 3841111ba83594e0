package daemon

import (
	"errors"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	cfg := DefaultDaemonConfig()
	cfg.MaxDeliver, cfg.RetryDelay, cfg.MaxRetryDelay = 4, 10*time.Second, 25*time.Second
	cause := errors.New("incus: 500")
	tests := []struct {
		kind      outcomeKind
		delivered uint64
		want      decision
	}{
		{outcomeRan, 1, decision{action: actAck, final: true}},
		{outcomeRan, 4, decision{action: actAck, final: true}},
		{outcomeInvalid, 1, decision{action: actTerm, reason: "incus: 500", final: true, message: "incus: 500"}},
		{outcomeCancelled, 2, decision{action: actAck, final: true, message: "cancelled"}},
		{outcomeDuplicate, 3, decision{action: actAck}},
		{outcomeInvalidRepeat, 2, decision{action: actTerm, reason: "incus: 500"}},
		{outcomeInfra, 1, decision{action: actNak, delay: 10 * time.Second, release: true,
			message: "infrastructure error on delivery 1 of 4, the job goes back to the queue: incus: 500"}},
		{outcomeInfra, 2, decision{action: actNak, delay: 20 * time.Second, release: true,
			message: "infrastructure error on delivery 2 of 4, the job goes back to the queue: incus: 500"}},
		{outcomeInfra, 3, decision{action: actNak, delay: 25 * time.Second, release: true,
			message: "infrastructure error on delivery 3 of 4, the job goes back to the queue: incus: 500"}},
		{outcomeInfra, 4, decision{action: actAck, final: true, dead: true,
			message: "infrastructure error on the last delivery (4 of 4), giving up: incus: 500"}},
		{outcomeInterrupted, 1, decision{action: actNak, release: true,
			message: "interrupted: the daemon stopped while the job ran; the job goes back to the queue"}},
		{outcomeBusy, 1, decision{action: actNak}},
		{outcomeSuperseded, 1, decision{action: actNone, message: "superseded: another worker took the job over; this run is not the job's result"}},
		{outcomeExhausted, 4, decision{action: actAck, final: true, dead: true,
			message: "gave up: the job was delivered 4 times and no worker finished it (its last worker stopped answering)"}},
	}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			if got := classify(tc.kind, cause, tc.delivered, cfg); got != tc.want {
				t.Errorf("classify(%s, delivery %d) = %+v, want %+v", tc.kind, tc.delivered, got, tc.want)
			}
		})
	}
}

func TestOutcomesAreNamed(t *testing.T) {
	for k := outcomeRan; k <= outcomeExhausted; k++ {
		if k.String() == "" {
			t.Errorf("outcome %d has no name", k)
		}
	}
}
