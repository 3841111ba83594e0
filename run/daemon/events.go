package daemon

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// eventSink publishes one attempt's lifecycle events on its run subject as
// they happen. It holds back the runner's run_finished: the worker
// publishes that one itself once the record is settled (final or not).
type eventSink struct {
	pub    Publisher
	jobKey string
	log    *zap.Logger
	limit  int // the largest run_finished payload; 0: defaultRecordLimit
}

func (s *eventSink) Emit(ctx context.Context, ev model.LifecycleEvent) {
	if ev.Event == model.EventRunFinished {
		return
	}
	s.publish(ctx, ev, false)
}

// publish sends ev; final marks the run_finished that is the job's result.
func (s *eventSink) publish(ctx context.Context, ev model.LifecycleEvent, final bool) {
	if s.pub == nil {
		return
	}
	runID := ev.RunID
	if ev.Run != nil {
		runID = ev.Run.RunID
	}
	b, err := encodeJSON(ev)
	if err != nil {
		s.log.Error("encode lifecycle event", zap.String("event", ev.Event), zap.Error(err))
		return
	}
	s.send(ctx, ev.Event, runID, b, final)
}

// publishFinished sends a run's run_finished; a record too large for one
// message goes out trimmed, with the marker (the results bucket and the
// run directory have it whole).
func (s *eventSink) publishFinished(ctx context.Context, rec model.RunRecord, final bool) {
	if s.pub == nil {
		return
	}
	limit := s.limit
	if limit <= 0 {
		limit = defaultRecordLimit
	}
	b, err := runFinishedPayload(rec, limit, protocol.RecordMarker{})
	if err != nil {
		s.log.Error("encode lifecycle event", zap.String("event", model.EventRunFinished), zap.Error(err))
		return
	}
	s.send(ctx, model.EventRunFinished, rec.RunID, b, final)
}

func (s *eventSink) send(ctx context.Context, event, runID string, b []byte, final bool) {
	h := nats.Header{}
	h.Set(protocol.HeaderJobID, s.jobKey)
	h.Set(protocol.HeaderRunID, runID)
	h.Set(protocol.HeaderEvent, event)
	if event == model.EventRunFinished {
		h.Set(protocol.HeaderFinal, strconv.FormatBool(final))
	}
	if err := s.pub.Publish(context.WithoutCancel(ctx), protocol.EventSubject(s.jobKey, runID), b, h); err != nil {
		// Events are a live view; the records are the truth.
		s.log.Warn("publish lifecycle event", zap.String("event", event), zap.Error(err))
	}
}
