package daemon

import (
	"errors"
	"fmt"
	"time"
)

// Delivery is how the work consumer delivers a job, the one home of these
// two settings and of their rules: the queue configures the consumer with
// them (OpenQueue), and the daemon paces its heartbeats by AckWait and
// counts a job's deliveries against MaxDeliver. QueueConfig and
// DaemonConfig embed it; `jerichoci serve` sets the queue's and hands the
// same value to the daemon.
type Delivery struct {
	// AckWait is the consumer's: a message whose worker died is delivered
	// again AckWait after its last InProgress. A running job sends
	// InProgress every heartbeat (DaemonConfig.Heartbeat).
	AckWait time.Duration
	// MaxDeliver is how many deliveries a job gets before it gives up.
	MaxDeliver int
}

// DefaultDelivery returns the defaults: 10s, 4 deliveries.
func DefaultDelivery() Delivery { return Delivery{AckWait: 10 * time.Second, MaxDeliver: 4} }

// Validate reports every problem at once.
func (d Delivery) Validate() error {
	var errs []error
	if d.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack wait %s: must be at least 1s", d.AckWait))
	}
	if d.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("max deliver %d: must be at least 1", d.MaxDeliver))
	}
	return errors.Join(errs...)
}
