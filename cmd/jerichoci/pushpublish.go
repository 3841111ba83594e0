package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"jerichoci/internal/backoff"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// exitPartialPush: a push queued some of its lanes, not all; stderr says
// which were queued (by job id) and which were not (README, "Exit codes").
// A push that queued none exits 2, like every other failure to queue.
const exitPartialPush = 3

// pushTries bounds the publications of one lane; between them the pause
// doubles from pushRetry.First up to pushRetry.Max. A retry is safe: the
// job id is the message's JetStream dedup id, so a publication that did
// reach the stream before its ack was lost is not queued twice.
const pushTries = 5

var pushRetry = backoff.Backoff{First: 250 * time.Millisecond, Max: 2 * time.Second}

// jobPublisher queues one job: *protocol.Client does.
type jobPublisher interface {
	Enqueue(ctx context.Context, spec model.JobSpec) (protocol.EnqueueResult, error)
}

// publishPush queues every job of the push, each retried on failure, and
// only then prints: the push's line and each queued job's id with its
// lane. Nothing is printed between publications, so a reader that goes
// away (`enqueue a b c | head -1`: SIGPIPE on the first write) cannot stop
// the push halfway. When a lane still fails, the push stops there: the
// lanes before it are printed as queued and stderr names the ones that
// are not. sig is the command's own context (a signal ends it); ctx bounds
// the publications.
func (c *cli) publishPush(ctx, sig context.Context, pub jobPublisher, group string, specs []model.JobSpec) int {
	var acks []protocol.EnqueueResult
	var failErr error
	for i := range specs {
		ack, err := publishRetried(ctx, pub, specs[i])
		if err != nil {
			failErr = fmt.Errorf("lane %s (%d of %d), job %s: %w", specs[i].Name(), i+1, len(specs), specs[i].JobID, err)
			break
		}
		acks = append(acks, ack)
	}
	if len(acks) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "push #%d %s: %d lane(s)\n", acks[0].Sequence, group, len(specs))
		for i := range acks {
			fmt.Fprintf(&b, "%s %s\n", specs[i].JobID, specs[i].Name())
		}
		_, _ = c.stdout.Write([]byte(b.String()))
	}
	if failErr == nil {
		return exitOK
	}
	var queued, notQueued []string
	for i, s := range specs {
		if i < len(acks) {
			queued = append(queued, s.JobID.String()+" "+s.Name())
		} else {
			notQueued = append(notQueued, s.Name())
		}
	}
	report := fmt.Sprintf("push %s: %v\nqueued %d of %d lane(s): %s\nnot queued (%d): %s", group, failErr,
		len(queued), len(specs), orNone(queued), len(notQueued), strings.Join(notQueued, ", "))
	switch {
	case sig.Err() != nil:
		fmt.Fprintf(c.stderr, "jerichoci: interrupted; %s\n", report)
		return exitInterrupted
	case len(queued) == 0:
		return c.fail(exitUsage, "%s\nnothing was queued", report)
	default:
		return c.fail(exitPartialPush, "%s\nthe push page shows the lanes not queued as such; enqueue them again to run them", report)
	}
}

// publishRetried publishes spec, again after a pause when it fails, at
// most pushTries times; an invalid spec or an ended ctx is not retried.
func publishRetried(ctx context.Context, pub jobPublisher, spec model.JobSpec) (protocol.EnqueueResult, error) {
	b := pushRetry
	var err error
	for try := 1; ; try++ {
		var ack protocol.EnqueueResult
		if ack, err = pub.Enqueue(ctx, spec); err == nil {
			return ack, nil
		}
		if errors.Is(err, model.ErrInvalidSpec) || try == pushTries {
			return protocol.EnqueueResult{}, fmt.Errorf("%w (tried %d time(s))", err, try)
		}
		if werr := b.Wait(ctx); werr != nil {
			return protocol.EnqueueResult{}, fmt.Errorf("%w (tried %d time(s), then %w)", err, try, werr)
		}
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
