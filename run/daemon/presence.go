package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/run/protocol"
)

// presenceKey is process's key in the fleet's bucket: "alive.HOST/BOOT/PID/START"
// (internal/procid's form holds only key-safe characters).
func presenceKey(process string) string { return "alive." + process }

// Beat stores this moment under process's key (Presence).
func (q *Queue) Beat(ctx context.Context, process string) error {
	if _, err := q.fleetKV.Put(ctx, presenceKey(process), []byte(strconv.FormatInt(time.Now().Unix(), 10))); err != nil {
		return fmt.Errorf("store the presence of %s in %s: %w", process, protocol.BucketFleet, err)
	}
	return nil
}

// LastBeat returns when process's key was last written, by the NATS
// server's clock (Presence).
func (q *Queue) LastBeat(ctx context.Context, process string) (time.Time, bool, error) {
	e, err := q.fleetKV.Get(ctx, presenceKey(process))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("read the presence of %s in %s: %w", process, protocol.BucketFleet, err)
	}
	return e.Created(), true, nil
}

// Leave deletes process's key (Presence).
func (q *Queue) Leave(ctx context.Context, process string) error {
	if err := q.fleetKV.Purge(ctx, presenceKey(process)); err != nil {
		return fmt.Errorf("remove the presence of %s from %s: %w", process, protocol.BucketFleet, err)
	}
	return nil
}

var _ Presence = (*Queue)(nil)
