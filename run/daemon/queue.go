package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"jerichoci/internal/backoff"
	"jerichoci/run/protocol"
)

// Message is the part of a JetStream message a worker uses;
// jetstream.Msg satisfies it.
type Message interface {
	Data() []byte
	Headers() nats.Header
	Metadata() (*jetstream.MsgMetadata, error)
	DoubleAck(ctx context.Context) error
	Nak() error
	NakWithDelay(delay time.Duration) error
	InProgress() error
	TermWithReason(reason string) error
}

var _ Message = jetstream.Msg(nil)

// Source hands out one message at a time; Next blocks until a message
// comes or ctx is done.
type Source interface {
	Next(ctx context.Context) (Message, error)
}

// KV is the part of a JetStream key-value bucket the daemon uses;
// jetstream.KeyValue satisfies it.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

var _ KV = jetstream.KeyValue(nil)

// Publisher sends a message on a subject (core NATS: events are
// fire-and-forget; the events stream keeps them).
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte, header nats.Header) error
}

// SourceStore opens and describes stored source tarballs; a missing
// bucket or object gives an error wrapping ErrSourceNotFound.
type SourceStore interface {
	Open(ctx context.Context, bucket, object string) (io.ReadCloser, error)
	Stat(ctx context.Context, bucket, object string) (ObjectInfo, error)
}

// ErrSourceNotFound is wrapped when a job's source object does not exist.
var ErrSourceNotFound = errors.New("source not found")

// QueueConfig is the JetStream layout the daemon creates or updates.
type QueueConfig struct {
	// Delivery is the consumer's ack wait and delivery limit.
	Delivery
	// MaxAckPending must cover every worker slot of the fleet.
	MaxAckPending int
	Duplicates    time.Duration // dedup window for Nats-Msg-Id
	EventsMaxAge  time.Duration // how long the events stream keeps events
	// LogsMaxBytes caps the live-logs stream; the oldest chunks go first
	// (a reader sees the gap in the chunk numbers).
	LogsMaxBytes int64
	SourcesTTL   time.Duration // how long source tarballs are kept
	// Fleet names the fleet when the stream has none yet ("": a random id);
	// when it has one, it must be that one.
	Fleet string
	// KeepResults is how long final records and claims are kept.
	KeepResults time.Duration
	// ResultsMaxBytes caps the results bucket; at the cap the oldest
	// records go first (DiscardOld), so a flood never stops the fleet from
	// storing results (docs/SECURITY.md).
	ResultsMaxBytes int64
	Replicas        int
	// PollWait bounds one pull request, so a stopping worker notices soon.
	PollWait time.Duration
	// RequestTimeout is how long a set-up request waits for its answer
	// before it is sent again (doubling, at most four times as long); see
	// setupRequest.
	RequestTimeout time.Duration
	// Resent, when set, hears of each set-up request sent again: what it
	// does, the try that went unanswered (from 1) and its error.
	Resent func(what string, try int, err error)
}

// DefaultQueueConfig returns the daemon's defaults.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		Delivery: DefaultDelivery(), MaxAckPending: 1000, Duplicates: 10 * time.Minute,
		EventsMaxAge: 24 * time.Hour, LogsMaxBytes: 1 << 30, SourcesTTL: 7 * 24 * time.Hour, KeepResults: 7 * 24 * time.Hour,
		ResultsMaxBytes: 1 << 30, Replicas: 1, PollWait: 2 * time.Second,
		RequestTimeout: 5 * time.Second,
	}
}

// Validate reports every problem at once.
func (c QueueConfig) Validate() error {
	errs := []error{c.Delivery.Validate()}
	if c.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("max ack pending %d: must be at least 1", c.MaxAckPending))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: expected 1 to 5", c.Replicas))
	}
	if c.PollWait <= 0 {
		errs = append(errs, fmt.Errorf("poll wait %s: must be positive", c.PollWait))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("request timeout %s: must be positive", c.RequestTimeout))
	}
	if c.Fleet != "" && !ValidFleet(c.Fleet) {
		errs = append(errs, fmt.Errorf("fleet %q: expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Fleet))
	}
	if c.ResultsMaxBytes < protocol.MaxResultValue {
		errs = append(errs, fmt.Errorf("results max bytes %d: must be at least one record's limit, %d", c.ResultsMaxBytes, protocol.MaxResultValue))
	}
	if c.KeepResults < time.Minute {
		errs = append(errs, fmt.Errorf("keep results %s: must be at least 1m", c.KeepResults))
	}
	return errors.Join(errs...)
}

// Queue is the daemon's JetStream plumbing: the work stream and its
// consumer, the job and result buckets, the source store and the events.
type Queue struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     QueueConfig
	cons    jetstream.Consumer
	Jobs    jetstream.KeyValue
	Results jetstream.KeyValue
	records jetstream.ObjectStore
	// Fleet is the fleet id stored next to the stream (FleetID).
	Fleet   string
	fleetKV jetstream.KeyValue // the fleet's id and its processes' presence (presence.go)

	mu      sync.Mutex
	sources map[string]jetstream.ObjectStore
}

// OpenQueue creates or updates the streams, the consumer and the buckets.
// Each request is idempotent and sent again when unanswered
// (setupRequest), so a fleet that starts with its cluster sets up in
// seconds (docs/RELIABILITY.md, "A fleet that starts with its cluster").
func OpenQueue(ctx context.Context, nc *nats.Conn, cfg QueueConfig) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	q := &Queue{nc: nc, js: js, cfg: cfg, sources: map[string]jetstream.ObjectStore{}}
	streams := []jetstream.StreamConfig{{
		Name: protocol.StreamJobs, Description: "jerichoci work queue: one job spec per message",
		Subjects: []string{protocol.SubjectJobsPrefix + ">"}, Retention: jetstream.WorkQueuePolicy,
		Discard: jetstream.DiscardNew, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		Duplicates: cfg.Duplicates,
	}, {
		Name: protocol.StreamEvents, Description: "jerichoci lifecycle events, kept for late readers",
		Subjects: []string{protocol.SubjectRunsPrefix + ">"}, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardOld, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxAge: cfg.EventsMaxAge,
	}, {
		Name: protocol.StreamLogs, Description: "jerichoci jobs' live output (host.log), capped, for late readers",
		Subjects: []string{protocol.SubjectLogsPrefix + ">"}, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardOld, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxAge: cfg.EventsMaxAge,
		MaxBytes: cfg.LogsMaxBytes,
		// Clients replay a job's output with direct gets: they may create
		// no consumer (docs/PROTOCOL.md).
		AllowDirect: true,
	}, {
		Name: protocol.StreamDead, Description: "jerichoci dead letters: jobs that ran out of deliveries",
		Subjects: []string{protocol.SubjectDeadPrefix + ">"}, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardOld, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxAge: cfg.KeepResults,
	}}
	for _, sc := range streams {
		if err := cfg.setupRequest(ctx, "create or update stream "+sc.Name, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		}); err != nil {
			return nil, err
		}
	}
	if err := cfg.setupRequest(ctx, "create or update consumer "+protocol.ConsumerWorkers+" on "+protocol.StreamJobs, func(ctx context.Context) (err error) {
		q.cons, err = js.CreateOrUpdateConsumer(ctx, protocol.StreamJobs, jetstream.ConsumerConfig{
			Durable: protocol.ConsumerWorkers, Description: "jerichoci workers: pull one job when a slot is free",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver,
			MaxAckPending: cfg.MaxAckPending, FilterSubject: protocol.SubjectJobsPrefix + ">", Replicas: cfg.Replicas,
			// No prefetching, ever: a pull may ask for one message only.
			MaxRequestBatch: 1,
		})
		return err
	}); err != nil {
		return nil, err
	}
	// Claims and results expire after KeepResults; a claim may carry its
	// own shorter TTL (a cancel for a job nobody has seen), hence the
	// limit markers, which turn per-key TTLs on.
	if err := cfg.setupRequest(ctx, "create or update key-value bucket "+protocol.BucketJobs, func(ctx context.Context) (err error) {
		q.Jobs, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: protocol.BucketJobs, Description: "jerichoci job claims, keyed by job id", History: 1,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, TTL: cfg.KeepResults, LimitMarkerTTL: time.Minute,
		})
		return err
	}); err != nil {
		return nil, err
	}
	// Results too: a job refused before it ran gets a shorter TTL of its
	// own (DaemonConfig.UnrunResultTTL). An older bucket without limit
	// markers gets them here; the server allows turning them on.
	if err := cfg.setupRequest(ctx, "create or update key-value bucket "+protocol.BucketResults, func(ctx context.Context) (err error) {
		q.Results, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: protocol.BucketResults, Description: "jerichoci final run records, keyed by job id", History: 1,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxValueSize: protocol.MaxResultValue, TTL: cfg.KeepResults,
			LimitMarkerTTL: time.Minute, MaxBytes: cfg.ResultsMaxBytes,
		})
		return err
	}); err != nil {
		return nil, err
	}
	if err := cfg.setupRequest(ctx, "make stream KV_"+protocol.BucketResults+" discard its oldest values at its cap", func(ctx context.Context) error {
		return discardOld(ctx, js, "KV_"+protocol.BucketResults)
	}); err != nil {
		return nil, err
	}
	if err := cfg.setupRequest(ctx, "create or update object store "+protocol.BucketRecords, func(ctx context.Context) (err error) {
		q.records, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: protocol.BucketRecords, Description: "jerichoci final run records too large for a KV value, as <job_id>.json",
			TTL: cfg.KeepResults, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		return err
	}); err != nil {
		return nil, err
	}
	if err := cfg.setupRequest(ctx, "create or update object store "+protocol.BucketSources, func(ctx context.Context) error {
		obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: protocol.BucketSources, Description: "jerichoci source snapshots (tar.gz), named by content hash",
			TTL: cfg.SourcesTTL, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		q.sources[protocol.BucketSources] = obj
		return err
	}); err != nil {
		return nil, err
	}
	if err := cfg.setupRequest(ctx, "read or store the fleet id in "+protocol.BucketFleet, func(ctx context.Context) (err error) {
		q.Fleet, q.fleetKV, err = fleetID(ctx, js, cfg)
		return err
	}); err != nil {
		return nil, err
	}
	return q, nil
}

// setupRequest runs one idempotent set-up request and wraps its error
// with what. A request unanswered within RequestTimeout is sent again
// (the bound doubling, at most four times RequestTimeout) until ctx ends:
// a JetStream cluster that is still forming can leave a create request
// unanswered for minutes, while the same request sent again is answered
// at once (seen with nats-server 2.15 on a fresh 3-node cluster, one
// client or three; docs/RELIABILITY.md). "No responders" (a stream just
// created, its leader not elected yet) is sent again after a pause of a
// fifth of RequestTimeout. Any other error is returned at once, for the
// caller to classify.
func (cfg QueueConfig) setupRequest(ctx context.Context, what string, req func(context.Context) error) error {
	bound := backoff.Backoff{First: cfg.RequestTimeout, Max: 4 * cfg.RequestTimeout}
	for try := 1; ; try++ {
		rctx, cancel := context.WithTimeout(ctx, bound.Next())
		err := req(rctx)
		cancel()
		if err == nil {
			return nil
		}
		noLeader := errors.Is(err, nats.ErrNoResponders)
		if ctx.Err() != nil || !(noLeader || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if cfg.Resent != nil {
			cfg.Resent(what, try, err)
		}
		if noLeader {
			// No responders comes at once: a stream just created whose
			// leader is not elected yet. Pause as a short try would.
			if err := backoff.Sleep(ctx, cfg.RequestTimeout/5); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}
}

// discardOld makes a bucket's stream drop its oldest values at its byte
// cap, where a key-value bucket refuses new ones (nats.go creates and
// updates every bucket with DiscardNew).
func discardOld(ctx context.Context, js jetstream.JetStream, stream string) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	if cfg.Discard == jetstream.DiscardOld {
		return nil
	}
	cfg.Discard = jetstream.DiscardOld
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

var fleetPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidFleet reports whether s can name a fleet: 1-64 letters, digits,
// '.', '_' or '-', starting with a letter or digit.
func ValidFleet(s string) bool { return fleetPattern.MatchString(s) }

// fleetID reads the fleet's id from its bucket (returned too), creating it
// the first time: cfg.Fleet when set, else "fleet-" and 12 random hex digits. Every
// daemon of the stream reads the same id; a --fleet that names another
// fleet than the stream's is refused.
func fleetID(ctx context.Context, js jetstream.JetStream, cfg QueueConfig) (string, jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: protocol.BucketFleet, Description: "jerichoci fleet identity: the daemons sharing this work stream",
		History: 1, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
	})
	if err != nil {
		return "", nil, fmt.Errorf("create or update key-value bucket %s: %w", protocol.BucketFleet, err)
	}
	for range 3 {
		e, err := kv.Get(ctx, protocol.FleetKey)
		switch {
		case err == nil:
			id := string(e.Value())
			if cfg.Fleet != "" && cfg.Fleet != id {
				return "", nil, fmt.Errorf("fleet: the work stream on this NATS server belongs to fleet %q, and --fleet %q names another; use %q, or another NATS server", id, cfg.Fleet, id)
			}
			return id, kv, nil
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return "", nil, fmt.Errorf("read the fleet id from %s: %w", protocol.BucketFleet, err)
		}
		id := cfg.Fleet
		if id == "" {
			id = "fleet-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
		}
		if _, err := kv.Create(ctx, protocol.FleetKey, []byte(id)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return "", nil, fmt.Errorf("store the fleet id in %s: %w", protocol.BucketFleet, err)
		}
	}
	return "", nil, fmt.Errorf("read the fleet id from %s: it keeps changing", protocol.BucketFleet)
}

// Next pulls one message: a pull request for a single message, so nothing
// waits in a client buffer while its AckWait runs out.
func (q *Queue) Next(ctx context.Context) (Message, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// The pull ends with ctx: a stopping daemon leaves no pending pull
		// behind to catch a job it would not run.
		pctx, cancel := context.WithTimeout(ctx, q.cfg.PollWait)
		m, err := q.cons.Next(jetstream.FetchContext(pctx))
		cancel()
		switch {
		case err == nil:
			return m, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoMessages), errors.Is(err, context.DeadlineExceeded):
			continue
		default:
			return nil, fmt.Errorf("pull from consumer %s: %w", protocol.ConsumerWorkers, err)
		}
	}
}

// MaxPayload is the largest message the connected server takes.
func (q *Queue) MaxPayload() int64 { return q.nc.MaxPayload() }

// PutRecord stores a whole final record in the records object store.
func (q *Queue) PutRecord(ctx context.Context, name string, data []byte) error {
	if _, err := q.records.PutBytes(ctx, name, data); err != nil {
		return fmt.Errorf("put %s in object store %s: %w", name, protocol.BucketRecords, err)
	}
	return nil
}

// PublishDead stores a dead letter in the dead-letter stream (acked by
// the server: it is durable when this returns nil).
func (q *Queue) PublishDead(ctx context.Context, dl protocol.DeadLetter) error {
	b, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: protocol.DeadSubject(dl.JobID), Data: b, Header: nats.Header{}}
	m.Header.Set(protocol.HeaderJobID, dl.JobID)
	m.Header.Set(jetstream.MsgIDHeader, "dead-"+dl.JobID)
	if _, err := q.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dead letter of %s: %w", dl.JobID, err)
	}
	return nil
}

// Publish sends a core NATS message.
func (q *Queue) Publish(_ context.Context, subject string, data []byte, header nats.Header) error {
	if err := q.nc.PublishMsg(&nats.Msg{Subject: subject, Data: data, Header: header}); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// Open opens a stored source tarball.
func (q *Queue) Open(ctx context.Context, bucket, object string) (io.ReadCloser, error) {
	obj, err := q.sourceBucket(ctx, bucket)
	if err != nil {
		return nil, err
	}
	r, err := obj.Get(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("object %s in %s: %w", object, bucket, ErrSourceNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("object %s in %s: %w", object, bucket, err)
	}
	return r, nil
}

// sourceBucket is the object store bucket, opened once.
func (q *Queue) sourceBucket(ctx context.Context, bucket string) (jetstream.ObjectStore, error) {
	q.mu.Lock()
	obj, ok := q.sources[bucket]
	q.mu.Unlock()
	if ok {
		return obj, nil
	}
	obj, err := q.js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("object store %s: %w", bucket, ErrSourceNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", bucket, err)
	}
	q.mu.Lock()
	q.sources[bucket] = obj
	q.mu.Unlock()
	return obj, nil
}

// Stat describes a stored source tarball from its metadata, without
// reading it; a deleted object is missing.
func (q *Queue) Stat(ctx context.Context, bucket, object string) (ObjectInfo, error) {
	obj, err := q.sourceBucket(ctx, bucket)
	if err != nil {
		return ObjectInfo{}, err
	}
	info, err := obj.GetInfo(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return ObjectInfo{}, fmt.Errorf("object %s in %s: %w", object, bucket, ErrSourceNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("object %s in %s: %w", object, bucket, err)
	}
	size := int64(math.MaxInt64)
	if info.Size <= math.MaxInt64 {
		size = int64(info.Size)
	}
	return ObjectInfo{Size: size, SHA256: objectDigestHex(info.Digest)}, nil
}

// Canceller is what the cancel subscription calls.
type Canceller interface {
	Cancel(ctx context.Context, jobID string) (protocol.CancelReply, error)
}

// SubscribeCancels answers cancel requests on jerichoci.cancel.<job_id>.
// Every daemon subscribes (no queue group): the one running the job stops it
// at once, and each marks the claim, which is idempotent.
func (q *Queue) SubscribeCancels(c Canceller, timeout time.Duration) (*nats.Subscription, error) {
	return q.answerJobRequests(protocol.SubjectCancelPrefix, "", timeout, func(ctx context.Context, jobID string) any {
		rep, err := c.Cancel(ctx, jobID)
		if err != nil {
			rep = protocol.CancelReply{JobID: jobID, Error: err.Error()}
		}
		return rep
	})
}

// answerJobRequests answers the requests on prefix + "<job_id>" with what
// answer returns, as JSON, within timeout each; in queue group group
// (one daemon of the fleet answers), or, with group "", by every daemon.
func (q *Queue) answerJobRequests(prefix, group string, timeout time.Duration, answer func(ctx context.Context, jobID string) any) (*nats.Subscription, error) {
	sub, err := q.nc.QueueSubscribe(prefix+"*", group, func(m *nats.Msg) {
		jobID := strings.TrimPrefix(m.Subject, prefix)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		rep := answer(ctx, jobID)
		if m.Reply != "" {
			if b, err := encodeJSON(rep); err == nil {
				_ = m.Respond(b) // the requester may be gone
			}
		}
	})
	if err == nil {
		err = q.nc.Flush() // registered with the server before we say we listen
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe %s*: %w", prefix, err)
	}
	return sub, nil
}

// maxDeliveriesAdvisory is the part of the server's advisory we read.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// SubscribeGiveUps hands every work message that ran out of deliveries to
// giveUp, read back from the stream. The subscription is in a queue group,
// so one daemon of the fleet takes each.
func (q *Queue) SubscribeGiveUps(giveUp func(*StoredMessage), log *zap.Logger) (*nats.Subscription, error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + protocol.StreamJobs + "." + protocol.ConsumerWorkers
	sub, err := q.nc.QueueSubscribe(subject, "jerichoci-giveup", func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			log.Warn("unreadable max deliveries advisory", zap.ByteString("advisory", m.Data))
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stream, err := q.js.Stream(ctx, protocol.StreamJobs)
			if err != nil {
				log.Warn("max deliveries: open stream", zap.Error(err))
				return
			}
			raw, err := stream.GetMsg(ctx, adv.StreamSeq)
			if err != nil {
				log.Warn("max deliveries: read message", zap.Uint64("stream_seq", adv.StreamSeq), zap.Error(err))
				return
			}
			giveUp(&StoredMessage{Seq: adv.StreamSeq, Deliveries: adv.Deliveries, Body: raw.Data, Header: raw.Header,
				Delete: func(ctx context.Context) error {
					if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
						return fmt.Errorf("delete message %d: %w", adv.StreamSeq, err)
					}
					return nil
				}})
		}()
	})
	if err == nil {
		err = q.nc.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return sub, nil
}

// Ready checks that the server answers and the work consumer exists.
func (q *Queue) Ready(ctx context.Context) error {
	if !q.nc.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", q.nc.Status())
	}
	if _, err := q.cons.Info(ctx); err != nil {
		return fmt.Errorf("work consumer %s: %w", protocol.ConsumerWorkers, err)
	}
	return nil
}
