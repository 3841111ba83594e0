package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/internal/backoff"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// A JetStream publish is acknowledged by its stream's leader. In a NATS
// cluster, a stream without one (electing one after losing a node, or
// one whose cluster has lost its quorum: a majority of its nodes down or
// cut off) first answers nothing, so that a publish waits for its context
// (enqueue's 5 minutes), and later, once its replicas stop listening,
// "no responders", which on a single server means the stream does not
// exist (docs/RELIABILITY.md, "Hosts in network namespaces"). So enqueue
// waits at most ackWait.try for each acknowledgement and publishes again,
// in a cluster after "no responders" too, for ackWait.bound in all: an
// election within that goes unnoticed, a lost quorum is said as such.

// ackPolicy bounds the wait for JetStream's acknowledgements.
type ackPolicy struct {
	try   time.Duration // for one acknowledgement (an upload: for each chunk's)
	bound time.Duration // for all the tries of one step
}

var ackWait = ackPolicy{try: 15 * time.Second, bound: 2 * time.Minute}

// errNoQuorum is wrapped when no try of a step was acknowledged.
var errNoQuorum = errors.New("its stream has no leader, as when the cluster has lost its quorum " +
	"(a majority of its nodes down or cut off from the one this client reaches)")

// errUnacked ends a try that waited ackPolicy.try for an acknowledgement.
var errUnacked = errors.New("no acknowledgement in time")

// noStream reports whether err says that no stream listens: no responders.
func noStream(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// retry calls f until it succeeds, fails otherwise than by waiting in
// vain for an acknowledgement (or, in cluster, by no responders), or
// p.bound has passed (then the error wraps errNoQuorum in a cluster,
// errUnacked on a single server); what names the
// step, cluster the NATS cluster ("" for a single server). f's context
// ends p.try after it started or after f last called progress, whichever
// is later.
func (p ackPolicy) retry(ctx context.Context, what, cluster string, f func(ctx context.Context, progress func()) error) error {
	start := time.Now()
	for tries := 1; ; tries++ {
		tctx, cancel := context.WithCancelCause(ctx)
		timer := time.AfterFunc(p.try, func() { cancel(errUnacked) })
		err := f(tctx, func() { timer.Reset(p.try) })
		timer.Stop()
		unacked := errors.Is(context.Cause(tctx), errUnacked) || errors.Is(err, nats.ErrTimeout)
		cancel(nil)
		if err == nil || ctx.Err() != nil || !(unacked || cluster != "" && noStream(err)) {
			return err
		}
		if time.Since(start)+p.try > p.bound {
			took := fmt.Sprintf("in %s (%d tries, each waiting %s)", time.Since(start).Round(100*time.Millisecond), tries, p.try)
			if cluster == "" {
				return fmt.Errorf("%s: the NATS server's JetStream acknowledged nothing %s: %w", what, took, errUnacked)
			}
			var or string
			if !unacked {
				or = "; or no daemon ever created it"
			}
			return fmt.Errorf("%s: the JetStream of NATS cluster %q acknowledged nothing %s: %w%s", what, cluster, took, errNoQuorum, or)
		}
		if !unacked {
			// No responders comes at once: pause as a try would.
			if backoff.Sleep(ctx, p.try/5) != nil {
				return err
			}
		}
	}
}

// sourceUploader stores a source tarball: *protocol.Client does.
type sourceUploader interface {
	Cluster() string
	UploadSource(ctx context.Context, tarball io.Reader, sha256hex, description string) (model.SourceRef, error)
}

// uploadAcked uploads the tarball f from its start, again (under a new
// name) while chunks go unacknowledged (ackWait). The uploader reads the
// next chunk only once the last one is acknowledged, so each read is
// progress.
func uploadAcked(ctx context.Context, up sourceUploader, f io.ReadSeeker, sha256hex, description string) (model.SourceRef, error) {
	var ref model.SourceRef
	err := ackWait.retry(ctx, "upload source to "+protocol.BucketSources, up.Cluster(), func(ctx context.Context, progress func()) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		var err error
		ref, err = up.UploadSource(ctx, progressReader{f, progress}, sha256hex, description)
		return err
	})
	return ref, err
}

// enqueueAcked publishes spec, again while unacknowledged (ackWait): the
// job id is the message id, so the stream queues it once however often
// it is published.
func enqueueAcked(ctx context.Context, pub clusterPublisher, spec model.JobSpec) (protocol.EnqueueResult, error) {
	var ack protocol.EnqueueResult
	err := ackWait.retry(ctx, "publish job "+spec.JobID.String(), pub.Cluster(), func(ctx context.Context, _ func()) error {
		var err error
		ack, err = pub.Enqueue(ctx, spec)
		return err
	})
	if errors.Is(err, errNoQuorum) {
		err = fmt.Errorf("%w; enqueue again with --job-id %s once the cluster is whole (it is queued at most once)", err, spec.JobID)
	}
	return ack, err
}

// clusterPublisher queues a job and names its NATS cluster:
// *protocol.Client does.
type clusterPublisher interface {
	jobPublisher
	Cluster() string
}

// progressReader calls progress before each read.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p progressReader) Read(b []byte) (int, error) {
	p.progress()
	return p.r.Read(b)
}
