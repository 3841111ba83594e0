package daemon

import (
	"context"
	"fmt"
	"jerichoci/model"
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
	a.settle(res, stop)
}

// giveUpMessage is the run message of a job that ran out of deliveries.
func giveUpMessage(deliveries uint64) string {
	return fmt.Sprintf("gave up: the job was delivered %d times and no worker finished it (its last worker stopped answering)", deliveries)
}

// DeadLetterSink stores a dead letter durably.
type DeadLetterSink interface {
	PublishDead(ctx context.Context, dl protocol.DeadLetter) error
}

// deadLetter tells the orchestrator that the job ran out of deliveries:
// its final failed record is stored; this names the job, its attempts and
// the last error (this attempt's, else the one its claim kept).
func (a *attempt) deadLetter(rec model.RunRecord, cause error) {
	d := a.d
	if d.DeadLetters == nil {
		return
	}
	last := errText(cause)
	if last == "" {
		last = a.handedBack
	}
	dl := protocol.DeadLetter{JobID: a.key, StreamSeq: a.seq, Deliveries: a.delivered, MaxDeliver: d.Config.MaxDeliver,
		RunID: rec.RunID, LastError: last, Message: messageOf(rec), At: model.FormatTimestamp(d.now())}
	ctx, cancel := d.opCtx()
	defer cancel()
	if err := d.DeadLetters.PublishDead(ctx, dl); err != nil {
		a.log.Error("publish the dead letter", zap.Error(err))
		return
	}
	a.log.Warn("job ran out of deliveries; dead letter published", zap.Uint64("deliveries", a.delivered), zap.String("last_error", last))
}

func messageOf(rec model.RunRecord) string {
	if rec.Message == nil {
		return ""
	}
	return *rec.Message
}
