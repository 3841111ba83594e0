package protocol

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
)

// Client speaks the protocol to the daemons over one NATS connection: it
// uploads sources, queues, cancels and follows jobs. It does not own the
// connection and never prints.
type Client struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) (*Client, error) {
	if nc == nil {
		return nil, errors.New("protocol client: no NATS connection")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Client{nc: nc, js: js}, nil
}

// ErrNoDaemon is wrapped when no daemon answers a request.
var ErrNoDaemon = errors.New("no daemon answers")

// UploadSource stores a source tarball (tar.gz) in BucketSources under its
// content-addressed name SourceObjectName(sha256hex) and returns the job
// spec's reference to it. When the object is there already, tarball is not
// read. A tarball whose SHA-256 is not sha256hex is removed again and is
// an error. description describes the object (e.g. where it came from).
func (c *Client) UploadSource(ctx context.Context, tarball io.Reader, sha256hex, description string) (model.SourceRef, error) {
	if len(sha256hex) != sha256.Size*2 || !isLowerHex(sha256hex) {
		return model.SourceRef{}, fmt.Errorf("source digest %q: expected the 64-character lowercase hex SHA-256 of the tarball", sha256hex)
	}
	obj, err := c.js.ObjectStore(ctx, BucketSources)
	if err != nil {
		return model.SourceRef{}, fmt.Errorf("object store %s: %w (start jerichoci serve once to create it)", BucketSources, err)
	}
	name := SourceObjectName(sha256hex)
	ref := model.SourceRef{Kind: model.SourceObjectStore, Bucket: BucketSources, Object: name, SHA256: sha256hex}
	if info, err := obj.GetInfo(ctx, name); err == nil && !info.Deleted {
		return ref, nil
	}
	h := sha256.New()
	if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: name, Description: description}, io.TeeReader(tarball, h)); err != nil {
		return model.SourceRef{}, fmt.Errorf("upload source to %s: %w", BucketSources, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256hex {
		_ = obj.Delete(context.WithoutCancel(ctx), name)
		return model.SourceRef{}, fmt.Errorf("upload source to %s: the tarball's SHA-256 is %s, not %s", BucketSources, got, sha256hex)
	}
	return ref, nil
}

func isLowerHex(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// EnqueueResult is the work stream's acknowledgement of a queued job.
type EnqueueResult struct {
	Subject   string // JobSubject of the spec's lane or target
	Stream    string
	Sequence  uint64 // the job message's stream sequence
	Duplicate bool   // the job id was queued already, within the stream's dedup window
}

// Enqueue checks that spec encodes to a job spec model.ParseJobSpec
// accepts (an invalid one is the parse error, wrapping
// model.ErrInvalidSpec) and publishes it on JobSubject(spec.Name()) with
// the job id as Nats-Msg-Id, so that the same job published again within
// the dedup window is queued once.
func (c *Client) Enqueue(ctx context.Context, spec model.JobSpec) (EnqueueResult, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return EnqueueResult{}, fmt.Errorf("encode job spec: %w", err)
	}
	if _, err := model.ParseJobSpec(data); err != nil {
		return EnqueueResult{}, err
	}
	msg := &nats.Msg{Subject: JobSubject(spec.Name()), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, spec.JobID.String())
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = fmt.Errorf("%w (no stream takes %s: is jerichoci serve running?)", err, msg.Subject)
		}
		return EnqueueResult{}, fmt.Errorf("publish job: %w", err)
	}
	return EnqueueResult{Subject: msg.Subject, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Cancel asks the daemons to cancel a job (a request on
// SubjectCancelPrefix + jobID) and returns their answer. No daemon
// listening is an error wrapping ErrNoDaemon; an answer that carries an
// error is returned with that error.
func (c *Client) Cancel(ctx context.Context, jobID string) (CancelReply, error) {
	if _, err := model.ParseJobID(jobID); err != nil {
		return CancelReply{}, fmt.Errorf("cancel: %w", err)
	}
	subject := SubjectCancelPrefix + jobID
	m, err := c.nc.RequestWithContext(ctx, subject, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return CancelReply{}, fmt.Errorf("%w on %s: is jerichoci serve running?", ErrNoDaemon, subject)
	}
	if err != nil {
		return CancelReply{}, fmt.Errorf("cancel %s: %w", jobID, err)
	}
	var rep CancelReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return CancelReply{}, fmt.Errorf("cancel %s: unreadable reply %q", jobID, m.Data)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("cancel %s: %s", jobID, rep.Error)
	}
	return rep, nil
}
