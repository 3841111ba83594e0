package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"jerichoci/internal/backoff"
	"jerichoci/model"
)

// Event is one lifecycle event of a watched job, as a daemon published it.
type Event struct {
	model.LifecycleEvent
	// Data is the event as published: one JSON object.
	Data []byte
	// Final marks the run_finished event of the job's final record
	// (HeaderFinal); the same record ends the watch as its Record.
	Final bool
}

// Update is what a Watch delivers: an event, or, last, the final record.
// Exactly one of the two is set.
type Update struct {
	Event  *Event
	Record *model.RunRecord
}

// ErrWatchDone is returned by Next once the final record was delivered.
var ErrWatchDone = errors.New("watch: the final record was delivered")

// eventBuffer is how many events a watch holds for a slow reader; beyond
// it the connection drops them (a slow consumer).
const eventBuffer = 4096

// Watch follows one job: the lifecycle events of its runs as they come and
// its final record in BucketResults. Both arrive through Next, so the
// events published before the record are delivered before it. Stop ends it.
// It creates no consumer (clients and readers may not, docs/PROTOCOL.md):
// it subscribes to the events and to the record's key, then reads the key
// with a direct get, and again whenever the key changes.
type Watch struct {
	c      *Client
	subs   []*nats.Subscription
	events chan *nats.Msg
	keys   chan *nats.Msg // the record's key changed (maybe)
	check  bool           // read the key before waiting
	final  *model.RunRecord
	done   bool
	jobID  string
	// recheck paces the reads of the key while it has no record: a
	// change of the key reaches subscribers as it is published, which can
	// be before the stream has stored it (a direct get then finds nothing
	// yet), and a notice lost to a reconnect would never come again.
	recheck backoff.Backoff
	timer   *time.Timer
	// sawFinal: the final event came; grace bounds the wait for it once
	// the record is read.
	sawFinal bool
	grace    *time.Timer
}

// recheckFirst and recheckMax pace Watch's reads of a key without a record:
// soon after a change (the store catches up within milliseconds), then
// every recheckMax as a safety net.
const (
	recheckFirst = 10 * time.Millisecond
	recheckMax   = 2 * time.Second
	// resultReadTimeout bounds one read of the key.
	resultReadTimeout = 5 * time.Second
)

// finalGrace is how long a watch that has read the record waits for the
// events still on their way, when the final event has not come (a daemon
// publishes it just before the record; an older one does not).
const finalGrace = 500 * time.Millisecond

// Watch starts following a job. Subscribe before publishing or cancelling
// the job, so that no event is missed. ctx bounds only the setup; the watch
// lasts until Stop.
func (c *Client) Watch(ctx context.Context, jobID string) (*Watch, error) {
	if !ValidJobKey(jobID) {
		return nil, fmt.Errorf("watch job %q: expected 1 to 128 letters, digits, '_' or '-'", jobID)
	}
	w := &Watch{c: c, jobID: jobID, events: make(chan *nats.Msg, eventBuffer), keys: make(chan *nats.Msg, 16),
		recheck: backoff.Backoff{First: recheckFirst, Max: recheckMax}}
	for _, s := range []struct {
		subject string
		ch      chan *nats.Msg
	}{{EventSubject(jobID, "*"), w.events}, {resultSubject(jobID), w.keys}} {
		sub, err := c.nc.ChanSubscribe(s.subject, s.ch)
		if err != nil {
			w.Stop()
			return nil, fmt.Errorf("subscribe to %s: %w", s.subject, err)
		}
		w.subs = append(w.subs, sub)
	}
	if err := c.flush(ctx); err != nil {
		w.Stop()
		return nil, fmt.Errorf("subscribe to the job's events and result: %w", err)
	}
	// The record may be there already: read it now, so that a missing
	// bucket is an error of the setup.
	rec, err := c.Result(ctx, jobID)
	if err != nil {
		w.Stop()
		return nil, err
	}
	w.final = rec
	if rec == nil {
		w.timer = time.NewTimer(w.recheck.Next())
	}
	return w, nil
}

// resultSubject is the subject of a job's record in BucketResults.
func resultSubject(jobID string) string { return "$KV." + BucketResults + "." + jobID }

// Result returns the job's final record in BucketResults, or nil when it
// has none (yet). It is a direct get of the key's last value; an answer
// that is not from the results stream for this key is not taken
// (docs/PROTOCOL.md).
func (c *Client) Result(ctx context.Context, jobID string) (*model.RunRecord, error) {
	m, err := c.lastOfKey(ctx, DirectGetResults, streamKVResults, resultSubject(jobID))
	if err != nil || m == nil {
		return nil, err
	}
	var rec model.RunRecord
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		return nil, fmt.Errorf("result of job %s: %w", jobID, err)
	}
	return &rec, nil
}

// Claim returns the job's claim in BucketJobs, or nil when it has none.
func (c *Client) Claim(ctx context.Context, jobID string) (*Claim, error) {
	if !ValidJobKey(jobID) {
		return nil, fmt.Errorf("claim of job %q: expected 1 to 128 letters, digits, '_' or '-'", jobID)
	}
	m, err := c.lastOfKey(ctx, DirectGetClaims, streamKVJobs, "$KV."+BucketJobs+"."+jobID)
	if err != nil || m == nil {
		return nil, err
	}
	var cl Claim
	if err := json.Unmarshal(m.Data, &cl); err != nil {
		return nil, fmt.Errorf("claim of job %s: %w", jobID, err)
	}
	return &cl, nil
}

// keyGetTries bounds the direct gets of one key whose answers were not the
// stream's (someone else's answers sent to our inbox).
const keyGetTries = 5

// lastOfKey is a direct get of the last message on subject (a key) of
// stream, through api (a Direct* subject with "*" for the key); nil when
// the key has no value (none, deleted, expired).
func (c *Client) lastOfKey(ctx context.Context, api, stream, subject string) (*nats.Msg, error) {
	bucket := strings.TrimPrefix(stream, "KV_")
	req := strings.TrimSuffix(api, "*") + strings.TrimPrefix(subject, "$KV."+bucket+".")
	for range keyGetTries {
		m, err := c.nc.RequestWithContext(ctx, req, nil)
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("key-value bucket %s: %w (start jerichoci serve once to create it)", bucket, err)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		switch status := m.Header.Get(hdrStatus); status {
		case "":
		case "404":
			return nil, nil
		default:
			return nil, fmt.Errorf("read %s: status %s %s", subject, status, m.Header.Get("Description"))
		}
		if m.Header.Get(hdrStream) != stream || m.Header.Get(hdrSubject) != subject {
			continue // not the answer to our request
		}
		switch m.Header.Get("KV-Operation") {
		case "DEL", "PURGE":
			return nil, nil
		}
		if m.Header.Get("Nats-Marker-Reason") != "" {
			return nil, nil // the key's value expired
		}
		return m, nil
	}
	return nil, fmt.Errorf("read %s: %d answers in a row were not the stream's", subject, keyGetTries)
}

// Next waits for the next event or the final record. Events that are not
// lifecycle events are skipped. After the record it returns ErrWatchDone.
func (w *Watch) Next(ctx context.Context) (Update, error) {
	for {
		if w.done {
			return Update{}, ErrWatchDone
		}
		if w.final == nil && w.check {
			w.check = false
			// One read is bounded: a request written to a connection whose
			// server is gone (cut off, not closed) is never answered, and the
			// client reconnects to another server only later; the next
			// recheck asks again (docs/RELIABILITY.md, "Hosts in network
			// namespaces").
			rctx, cancel := context.WithTimeout(ctx, resultReadTimeout)
			rec, err := w.c.Result(rctx, w.jobID)
			cancel()
			if err != nil && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
				w.timer.Reset(w.recheck.Next())
				continue
			}
			if err != nil {
				return Update{}, err
			}
			if rec == nil {
				w.timer.Reset(w.recheck.Next())
			}
			if rec != nil {
				// Events published before the record reached the server
				// first; a round trip makes sure they are in our channel,
				// delivered before the record.
				_ = w.c.nc.Flush()
				w.final = rec
			}
		}
		if w.final != nil {
			// The daemon publishes its final event (HeaderFinal) before it
			// stores the record, but an event can reach this connection
			// after the record's direct get does (it crosses from the
			// fleet's account on its own path): until the final event is
			// here, events that come within finalGrace still go first.
			var late <-chan time.Time
			if !w.sawFinal {
				if w.grace == nil {
					w.grace = time.NewTimer(finalGrace)
				}
				late = w.grace.C
			}
			// Events already here go first; then, within the grace, those
			// still on their way.
			var m *nats.Msg
			select {
			case m = <-w.events:
			default:
				if late != nil {
					select {
					case m = <-w.events:
					case <-late:
					case <-ctx.Done():
						return Update{}, ctx.Err()
					}
				}
			}
			if m != nil {
				if ev, ok := w.decodeEvent(m); ok {
					w.sawFinal = w.sawFinal || ev.Final
					return Update{Event: ev}, nil
				}
				continue
			}
			w.done = true
			return Update{Record: w.final}, nil
		}
		select {
		case <-ctx.Done():
			return Update{}, ctx.Err()
		case m := <-w.events:
			if ev, ok := w.decodeEvent(m); ok {
				return Update{Event: ev}, nil
			}
		case <-w.keys:
			// Only a sign: what counts is the key's value, read anew, and
			// soon again if the store has not caught up yet.
			w.check = true
			w.recheck.Reset()
		case <-w.timer.C:
			w.check = true
		}
	}
}

// decodeEvent decodes an event of the watched job; a message on another
// subject (one another user's consumer delivered to the subscription,
// docs/PROTOCOL.md), or a server's answer sent there, is not one.
func (w *Watch) decodeEvent(m *nats.Msg) (*Event, bool) {
	rest, ok := strings.CutPrefix(m.Subject, SubjectRunsPrefix+w.jobID+".")
	if !ok || !strings.HasSuffix(rest, ".events") || strings.Count(rest, ".") != 1 {
		return nil, false
	}
	if serverAnswer(m) || m.Header.Get(HeaderJobID) != w.jobID {
		return nil, false // not the worker's event
	}
	ev := &Event{Data: m.Data, Final: m.Header.Get(HeaderFinal) == "true"}
	if err := json.Unmarshal(m.Data, &ev.LifecycleEvent); err != nil {
		return nil, false
	}
	return ev, true
}

// Stop ends the watch. It may be called more than once.
func (w *Watch) Stop() {
	for _, t := range []*time.Timer{w.timer, w.grace} {
		if t != nil {
			t.Stop()
		}
	}
	for _, sub := range w.subs {
		_ = sub.Unsubscribe()
	}
}
