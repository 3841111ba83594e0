package protocol

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
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
	if seq == 0 {
		return LogChunk{}, false // every chunk the worker publishes is numbered
	}
	return LogChunk{RunID: parts[1], Job: parts[2], Seq: seq, Data: data}, true
}

// replayBatch is how many stored chunks one direct get asks for.
const replayBatch = 256

// Headers the server sets on a direct get's answers.
const (
	hdrStream       = "Nats-Stream"
	hdrSubject      = "Nats-Subject"
	hdrSequence     = "Nats-Sequence"
	hdrLastSequence = "Nats-Last-Sequence"
	hdrNumPending   = "Nats-Num-Pending"
	hdrStatus       = "Status"
)

// serverAnswer reports whether m is an answer of the server (a direct
// get's, or a status) rather than a message a user published: such a
// message on a live subject was sent there as the answer to someone's
// request naming that subject as its reply (docs/PROTOCOL.md), and is
// not the worker's.
func serverAnswer(m *nats.Msg) bool {
	return m.Header.Get(hdrStream) != "" || m.Header.Get(hdrStatus) != ""
}

// logFollower delivers one job's chunks once each, in order per job and
// run: first those the stream holds (direct gets), then the live ones,
// which arrive from the start and wait until the stored ones are through.
type logFollower struct {
	mu        sync.Mutex
	fn        func(LogChunk)
	replaying bool
	held      []LogChunk
	last      map[[2]string]uint64
}

// deliver passes ch on unless a chunk of its job with that number or a
// later one went out already. Called with mu held.
func (f *logFollower) deliver(ch LogChunk) {
	key := [2]string{ch.RunID, ch.Job}
	if ch.Seq <= f.last[key] {
		return
	}
	f.last[key] = ch.Seq
	f.fn(ch)
}

func (f *logFollower) live(ch LogChunk) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replaying {
		f.held = append(f.held, ch)
		return
	}
	f.deliver(ch)
}

// replayed ends the replay: the live chunks that came meanwhile follow.
func (f *logFollower) replayed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replaying = false
	for _, ch := range f.held {
		f.deliver(ch)
	}
	f.held = nil
}

// FollowLogs calls fn with each chunk of the job's output, in order per
// job, from now on (subscribe before publishing the job to miss nothing);
// with replay, from the start of what the logs stream still holds. stop
// ends it. It creates no consumer (clients and readers may not,
// docs/PROTOCOL.md): it subscribes to the job's log subjects first, then
// reads what the stream already holds with batched direct gets, then
// passes on the live chunks not seen yet, by their HeaderLogSeq.
func (c *Client) FollowLogs(ctx context.Context, jobID string, replay bool, fn func(LogChunk)) (stop func(), err error) {
	if !ValidJobKey(jobID) {
		return nil, fmt.Errorf("follow the logs of job %q: expected 1 to 128 letters, digits, '_' or '-'", jobID)
	}
	subject := SubjectLogsPrefix + jobID + ".>"
	// Only chunks stored under this job's subjects, which only the worker
	// writes, and not a server's answer someone sent here (docs/PROTOCOL.md).
	ours := func(subj string) bool { return strings.HasPrefix(subj, SubjectLogsPrefix+jobID+".") }
	f := &logFollower{fn: fn, replaying: replay, last: map[[2]string]uint64{}}
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		if !ours(m.Subject) || serverAnswer(m) {
			return
		}
		if ch, ok := logChunk(m.Subject, m.Header, m.Data); ok {
			f.live(ch)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	if !replay {
		return func() { _ = sub.Unsubscribe() }, nil
	}
	if err := c.flush(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	// The first batch here, within ctx, so that a server without the
	// stream is an error of the call; the rest in the background, until
	// stop.
	next, more, err := c.replayBatch(ctx, jobID, 1, f)
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("replay %s from stream %s: %w", subject, StreamLogs, err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func(next uint64, more bool) {
		defer close(done)
		// Its own err: the named result is FollowLogs's, written as it
		// returns.
		var err error
		for more && err == nil {
			next, more, err = c.replayBatch(rctx, jobID, next, f)
		}
		// On an error the live chunks follow; the numbers show what is
		// missing.
		f.replayed()
	}(next, more)
	return func() {
		cancel()
		<-done
		_ = sub.Unsubscribe()
	}, nil
}

// flush is a round trip to the server within ctx (or the connection's
// own timeout when ctx has no deadline).
func (c *Client) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); ok {
		return c.nc.FlushWithContext(ctx)
	}
	return c.nc.Flush()
}

// replayBatch delivers up to replayBatch stored chunks of the job from
// stream sequence from on, and returns where the next batch starts and
// whether the stream holds more.
func (c *Client) replayBatch(ctx context.Context, jobID string, from uint64, f *logFollower) (next uint64, more bool, err error) {
	filter := SubjectLogsPrefix + jobID + ".>"
	req, err := json.Marshal(map[string]any{"seq": from, "next_by_subj": filter, "batch": replayBatch})
	if err != nil {
		return 0, false, err
	}
	inbox := c.nc.NewRespInbox()
	msgs := make(chan *nats.Msg, replayBatch+1)
	sub, err := c.nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.PublishRequest(DirectGetLogs, inbox, req); err != nil {
		return 0, false, err
	}
	next = from
	var prev uint64 // the last answer's stream sequence: the server chains them
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case m = <-msgs:
		}
		switch status := m.Header.Get(hdrStatus); status {
		case "":
		case "404":
			return next, false, nil // nothing (more) stored
		case "204": // the end of the batch
			pending, _ := strconv.ParseUint(m.Header.Get(hdrNumPending), 10, 64)
			return next, pending > 0, nil
		case "503":
			return 0, false, fmt.Errorf("%w (no stream answers direct gets on %s: is jerichoci serve running?)", nats.ErrNoResponders, DirectGetLogs)
		default:
			return 0, false, fmt.Errorf("direct get on %s: status %s %s", DirectGetLogs, status, m.Header.Get("Description"))
		}
		// An answer of this batch: from the logs stream, on this job's
		// subject, the one after the previous (anything else was sent
		// here by someone else, docs/PROTOCOL.md).
		seq, _ := strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64)
		lastSeq, _ := strconv.ParseUint(m.Header.Get(hdrLastSequence), 10, 64)
		subj := m.Header.Get(hdrSubject)
		if m.Header.Get(hdrStream) != StreamLogs || !strings.HasPrefix(subj, SubjectLogsPrefix+jobID+".") || seq < next || lastSeq != prev {
			continue
		}
		prev, next = seq, seq+1
		if ch, ok := logChunk(subj, m.Header, m.Data); ok {
			f.mu.Lock()
			f.deliver(ch)
			f.mu.Unlock()
		}
	}
}
