package daemon

import (
	"context"
	"fmt"

	"jerichoci/run/protocol"
)

// Pending is how many jobs wait in the work queue that no worker of the
// fleet took yet (the consumer's NumPending): the warm pool sizes itself
// to it (docs/INCUS.md, "The warm pool's size").
func (q *Queue) Pending(ctx context.Context) (int, error) {
	info, err := q.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("work consumer %s: %w", protocol.ConsumerWorkers, err)
	}
	return int(info.NumPending), nil
}
