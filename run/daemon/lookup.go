package daemon

// Where a job stands, for a client that names it by id: finished, claimed,
// queued (a message in the work stream no worker took yet) or unknown (a
// mistyped id). Lookups answer `logs --follow`; cancels use the same
// check to tell an unknown id from a job still waiting in the queue.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// QueuedJobs finds a job's message in the work stream.
type QueuedJobs interface {
	HasQueued(ctx context.Context, jobID string) (bool, error)
}

// maxQueueScan bounds the messages one HasQueued reads.
const maxQueueScan = 100_000

// HasQueued reports whether the work stream holds a message of the job
// (by its Nats-Msg-Id, else the spec's job_id): queued and not yet acked.
// It reads the stream's messages one by one, skipping the deleted ones.
func (q *Queue) HasQueued(ctx context.Context, jobID string) (bool, error) {
	stream, err := q.js.Stream(ctx, protocol.StreamJobs)
	if err != nil {
		return false, fmt.Errorf("work stream: %w", err)
	}
	seq := uint64(1)
	for range maxQueueScan {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(protocol.SubjectJobsPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("work stream message %d: %w", seq, err)
		}
		if queuedJobID(m) == jobID {
			return true, nil
		}
		seq = m.Sequence + 1
	}
	return false, fmt.Errorf("work stream: more than %d queued jobs; cannot tell whether job %s is among them", maxQueueScan, jobID)
}

// queuedJobID is the job id of a work message: its Nats-Msg-Id, as
// enqueue publishes it, else the spec's job_id.
func queuedJobID(m *jetstream.RawStreamMsg) string {
	if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
		return id
	}
	var spec struct {
		JobID string `json:"job_id"`
	}
	_ = json.Unmarshal(m.Data, &spec) // not a spec: no id
	return spec.JobID
}

// Lookup says where the job stands: finished (a final record), its claim's
// state, queued (in the work stream, unclaimed; cancelled when a cancel
// came first) or unknown. Without Waiting, a job with neither claim nor
// record is taken as queued: it cannot be told from an unknown id.
func (d *Daemon) Lookup(ctx context.Context, jobID string) (protocol.LookupReply, error) {
	if _, err := model.ParseJobID(jobID); err != nil {
		return protocol.LookupReply{}, fmt.Errorf("lookup: %w", err)
	}
	rep := protocol.LookupReply{JobID: jobID}
	finished := func() (bool, error) {
		e, err := d.Results.Get(ctx, jobID)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("result of job %s: %w", jobID, err)
		}
		var rec struct {
			RunID string `json:"run_id"`
		}
		_ = json.Unmarshal(e.Value(), &rec)
		rep.State, rep.RunID = protocol.ClaimFinished, rec.RunID
		return true, nil
	}
	if done, err := finished(); done || err != nil {
		return rep, err
	}
	cl, err := getClaim(ctx, d.Jobs, jobID)
	if err != nil {
		return rep, fmt.Errorf("claim of job %s: %w", jobID, err)
	}
	if cl != nil && cl.State != protocol.ClaimCancelled {
		rep.State, rep.RunID = cl.State, cl.RunID
		return rep, nil
	}
	queued, err := d.queued(ctx, jobID)
	if err != nil {
		return rep, err
	}
	switch {
	case queued && cl != nil:
		rep.State = protocol.ClaimCancelled
		return rep, nil
	case queued:
		rep.State = protocol.ClaimQueued
		return rep, nil
	}
	// It may have finished (and left the stream) since the first look.
	if done, err := finished(); done || err != nil {
		return rep, err
	}
	rep.State = protocol.ClaimUnknown
	return rep, nil
}

// queued reports whether the job waits in the work stream; true when the
// daemon has no way to tell (Waiting nil).
func (d *Daemon) queued(ctx context.Context, jobID string) (bool, error) {
	if d.Waiting == nil {
		return true, nil
	}
	return d.Waiting.HasQueued(ctx, jobID)
}

// Lookuper is what the lookup subscription calls.
type Lookuper interface {
	Lookup(ctx context.Context, jobID string) (protocol.LookupReply, error)
}

// SubscribeLookups answers lookups on jerichoci.lookup.<job_id>, in a
// queue group: one daemon of the fleet answers each.
func (q *Queue) SubscribeLookups(l Lookuper, timeout time.Duration) (*nats.Subscription, error) {
	return q.answerJobRequests(protocol.SubjectLookupPrefix, "jerichoci-lookup", timeout, func(ctx context.Context, jobID string) any {
		rep, err := l.Lookup(ctx, jobID)
		if err != nil {
			rep = protocol.LookupReply{JobID: jobID, Error: err.Error()}
		}
		return rep
	})
}
