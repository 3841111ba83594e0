package daemon

import (
	"context"
	"fmt"
	"jerichoci/run/protocol"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// StoredMessage is a work message read back from the stream by sequence:
// the server stopped delivering it (MaxDeliver), so no worker will settle
// it. Settling it deletes it from the stream.
type StoredMessage struct {
	Seq        uint64
	Deliveries uint64
	Body       []byte
	Header     nats.Header
	// Delete removes the message from the work stream.
	Delete func(ctx context.Context) error
}

var _ Message = (*StoredMessage)(nil)

func (m *StoredMessage) Data() []byte         { return m.Body }
func (m *StoredMessage) Headers() nats.Header { return m.Header }
func (m *StoredMessage) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.Deliveries, Sequence: jetstream.SequencePair{Stream: m.Seq},
		Stream: protocol.StreamJobs, Consumer: protocol.ConsumerWorkers}, nil
}
func (m *StoredMessage) DoubleAck(ctx context.Context) error { return m.Delete(ctx) }
func (m *StoredMessage) TermWithReason(string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return m.Delete(ctx)
}
func (m *StoredMessage) Nak() error                       { return nil }
func (m *StoredMessage) NakWithDelay(time.Duration) error { return nil }
func (m *StoredMessage) InProgress() error                { return nil }

// GiveUp settles a message the server stopped delivering after MaxDeliver
// deliveries without an answer (its last worker died): unless the job
// already has its final record, it gets a failed one that says so, and
// the message is deleted. The claim fences it like any delivery.
func (d *Daemon) GiveUp(m *StoredMessage) {
	d.init()
	log := d.logger().With(zap.String("worker", d.Config.ID+".giveup"))
	a := &attempt{d: d, msg: m, worker: d.Config.ID + ".giveup", delivered: m.Deliveries, seq: m.Seq, giveUp: true}
	a.jobCtx, a.cancel = context.WithCancelCause(d.killCtx)
	defer a.cancel(nil)
	a.base = log.With(zap.Uint64("stream_seq", a.seq), zap.Uint64("delivery", a.delivered))
	a.log = a.base
	res, stop := a.take()
	stop()
	a.settle(res)
}

// giveUpMessage is the run message of a job that ran out of deliveries.
func giveUpMessage(deliveries uint64) string {
	return fmt.Sprintf("gave up: the job was delivered %d times and no worker finished it (its last worker stopped answering)", deliveries)
}
