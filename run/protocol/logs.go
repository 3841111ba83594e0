package protocol

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LogChunk is a piece of one job's output, as the daemon published it.
type LogChunk struct {
	RunID string
	Job   string // the catalog job id ('.' written as '_')
	Seq   uint64 // from 1 per job and run; a jump is a chunk the cap dropped
	Data  []byte
}

func logChunk(subject string, h nats.Header, data []byte) (LogChunk, bool) {
	rest, ok := strings.CutPrefix(subject, SubjectLogsPrefix)
	if !ok {
		return LogChunk{}, false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 {
		return LogChunk{}, false
	}
	seq, _ := strconv.ParseUint(h.Get(HeaderLogSeq), 10, 64)
	return LogChunk{RunID: parts[1], Job: parts[2], Seq: seq, Data: data}, true
}

// FollowLogs calls fn with each chunk of the job's output, in order per
// job, from now on (subscribe before publishing the job to miss nothing);
// with replay, from the start of what the logs stream still holds. stop
// ends it.
func (c *Client) FollowLogs(ctx context.Context, jobID string, replay bool, fn func(LogChunk)) (stop func(), err error) {
	if !ValidJobKey(jobID) {
		return nil, fmt.Errorf("follow the logs of job %q: expected 1 to 128 letters, digits, '_' or '-'", jobID)
	}
	subject := SubjectLogsPrefix + jobID + ".>"
	// Only chunks stored under this job's subjects, which only the worker
	// writes: a message another user's consumer delivered to our
	// subscription carries its own subject (docs/PROTOCOL.md).
	ours := func(subj string) bool { return strings.HasPrefix(subj, SubjectLogsPrefix+jobID+".") }
	if !replay {
		sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
			if !ours(m.Subject) {
				return
			}
			if ch, ok := logChunk(m.Subject, m.Header, m.Data); ok {
				fn(ch)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
		}
		return func() { _ = sub.Unsubscribe() }, nil
	}
	cons, err := c.js.OrderedConsumer(ctx, StreamLogs, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("replay %s from stream %s: %w", subject, StreamLogs, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if !ours(m.Subject()) {
			return
		}
		if ch, ok := logChunk(m.Subject(), m.Headers(), m.Data()); ok {
			fn(ch)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", subject, err)
	}
	return cc.Stop, nil
}
