package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
type Watch struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	events  chan *nats.Msg
	watcher jetstream.KeyWatcher
	final   *model.RunRecord // received, delivered after the events before it
	done    bool
	jobID   string
}

// Watch starts following a job. Subscribe before publishing or cancelling
// the job, so that no event is missed. ctx bounds only the setup; the watch
// lasts until Stop.
func (c *Client) Watch(ctx context.Context, jobID string) (*Watch, error) {
	if !ValidJobKey(jobID) {
		return nil, fmt.Errorf("watch job %q: expected 1 to 128 letters, digits, '_' or '-'", jobID)
	}
	w := &Watch{nc: c.nc, jobID: jobID, events: make(chan *nats.Msg, eventBuffer)}
	var err error
	if w.sub, err = c.nc.ChanSubscribe(EventSubject(jobID, "*"), w.events); err != nil {
		return nil, fmt.Errorf("subscribe to the job's events: %w", err)
	}
	if err := c.nc.Flush(); err != nil {
		w.Stop()
		return nil, fmt.Errorf("subscribe to the job's events: %w", err)
	}
	kv, err := c.js.KeyValue(ctx, BucketResults)
	if err != nil {
		w.Stop()
		return nil, fmt.Errorf("key-value bucket %s: %w (start jerichoci serve once to create it)", BucketResults, err)
	}
	if w.watcher, err = kv.Watch(context.WithoutCancel(ctx), jobID); err != nil {
		w.Stop()
		return nil, fmt.Errorf("watch %s.%s: %w", BucketResults, jobID, err)
	}
	return w, nil
}

// Next waits for the next event or the final record. Events that are not
// lifecycle events are skipped. After the record it returns ErrWatchDone.
func (w *Watch) Next(ctx context.Context) (Update, error) {
	for {
		if w.done {
			return Update{}, ErrWatchDone
		}
		if w.final != nil {
			select {
			case m := <-w.events:
				if ev, ok := w.decodeEvent(m); ok {
					return Update{Event: ev}, nil
				}
			default:
				w.done = true
				return Update{Record: w.final}, nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return Update{}, ctx.Err()
		case m := <-w.events:
			if ev, ok := w.decodeEvent(m); ok {
				return Update{Event: ev}, nil
			}
		case e, ok := <-w.watcher.Updates():
			if !ok {
				return Update{}, errors.New("the results watch ended")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // nil marks the end of the initial values
			}
			if e.Key() != w.jobID {
				// Not this job's record: a message another user's consumer
				// delivered to our inbox (docs/PROTOCOL.md) carries the
				// subject it was stored under, which only the worker writes.
				continue
			}
			var rec model.RunRecord
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return Update{}, fmt.Errorf("result of the job: %w", err)
			}
			// Events published before the record reached the server first;
			// a round trip makes sure they are in our channel, delivered
			// before the record.
			_ = w.nc.Flush()
			w.final = &rec
		}
	}
}

// decodeEvent decodes an event of the watched job; a message on another
// subject (one another user's consumer delivered to the subscription,
// docs/PROTOCOL.md) is not one.
func (w *Watch) decodeEvent(m *nats.Msg) (*Event, bool) {
	rest, ok := strings.CutPrefix(m.Subject, SubjectRunsPrefix+w.jobID+".")
	if !ok || !strings.HasSuffix(rest, ".events") || strings.Count(rest, ".") != 1 {
		return nil, false
	}
	ev := &Event{Data: m.Data, Final: m.Header.Get(HeaderFinal) == "true"}
	if err := json.Unmarshal(m.Data, &ev.LifecycleEvent); err != nil {
		return nil, false
	}
	return ev, true
}

// Stop ends the watch. It may be called more than once.
func (w *Watch) Stop() {
	if w.watcher != nil {
		_ = w.watcher.Stop()
	}
	if w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
}
