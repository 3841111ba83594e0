package protocol

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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

// Cluster is the name of the NATS cluster of the server the client is
// connected to ("" for a server of no cluster).
func (c *Client) Cluster() string { return c.nc.ConnectedClusterName() }

// ErrNoDaemon is wrapped when no daemon answers a request.
var ErrNoDaemon = errors.New("no daemon answers")

// UploadSource stores a source tarball (tar.gz) in BucketSources and
// returns the job spec's reference to it. Its name is UploadObjectName:
// the digest and a random part, new for every upload, so that no other
// client can know it, replace it or put other bytes under it first (a
// client may write the bucket but neither read nor list it:
// docs/PROTOCOL.md). The object is written as nats.go's object store
// writes one: chunks on $O.<bucket>.C.<nuid>, then its description on
// $O.<bucket>.M.<name>. A tarball whose SHA-256 is not sha256hex is an
// error, and its description is never written. description describes the
// object (e.g. where it came from).
func (c *Client) UploadSource(ctx context.Context, tarball io.Reader, sha256hex, description string) (model.SourceRef, error) {
	if len(sha256hex) != sha256.Size*2 || !isLowerHex(sha256hex) {
		return model.SourceRef{}, fmt.Errorf("source digest %q: expected the 64-character lowercase hex SHA-256 of the tarball", sha256hex)
	}
	// The name's random part, and the chunks' subject token (nats.go's
	// object store puts a NUID there; any unique token reads the same).
	random := make([]byte, 16+12)
	if _, err := rand.Read(random); err != nil {
		return model.SourceRef{}, fmt.Errorf("upload source: %w", err)
	}
	name := UploadObjectName(sha256hex, hex.EncodeToString(random[:16]))
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: name, Description: description,
			Opts: &jetstream.ObjectMetaOptions{ChunkSize: uploadChunk}},
		Bucket: BucketSources, NUID: hex.EncodeToString(random[16:]),
	}
	chunkSubject := "$O." + BucketSources + ".C." + info.NUID
	h := sha256.New()
	buf := make([]byte, uploadChunk)
	for {
		n, rerr := io.ReadFull(tarball, buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, err := c.js.Publish(ctx, chunkSubject, buf[:n]); err != nil {
				return model.SourceRef{}, fmt.Errorf("upload source to %s: %w%s", BucketSources, err, noStreamHint(err))
			}
			info.Size += uint64(n)
			info.Chunks++
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return model.SourceRef{}, fmt.Errorf("upload source: read the tarball: %w", rerr)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256hex {
		return model.SourceRef{}, fmt.Errorf("upload source to %s: the tarball's SHA-256 is %s, not %s", BucketSources, got, sha256hex)
	}
	info.Digest = jetstream.GetObjectDigestValue(h)
	meta, err := json.Marshal(info)
	if err != nil {
		return model.SourceRef{}, err
	}
	m := nats.NewMsg("$O." + BucketSources + ".M." + base64.URLEncoding.EncodeToString([]byte(name)))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = meta
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return model.SourceRef{}, fmt.Errorf("upload source to %s: %w%s", BucketSources, err, noStreamHint(err))
	}
	return model.SourceRef{Kind: model.SourceObjectStore, Bucket: BucketSources, Object: name, SHA256: sha256hex}, nil
}

// uploadChunk is the size of a source's chunks, as nats.go's object
// store's default.
const uploadChunk = 128 << 10

// noStreamHint explains a publish no stream took.
func noStreamHint(err error) string {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return " (start jerichoci serve once to create it)"
	}
	return ""
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
	var rep CancelReply
	if err := c.askDaemons(ctx, "cancel", SubjectCancelPrefix, jobID, &rep); err != nil {
		return CancelReply{}, err
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("cancel %s: %s", jobID, rep.Error)
	}
	return rep, nil
}
