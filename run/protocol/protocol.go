// Package protocol is the wire contract between jerichoci's daemon and its
// clients (docs/PROTOCOL.md): subjects, the work stream and its consumer,
// buckets, headers, the claim and cancel-reply payloads, source and record
// object names, and a small typed client. It imports only model (and
// nats.go for the client).
package protocol

import (
	"regexp"
	"strings"

	"jerichoci/model"
)

// NATS names of the daemon (docs/PROTOCOL.md documents each).
const (
	// StreamJobs holds the work queue: one message per requested run.
	StreamJobs = "JERICHOCI_JOBS"
	// SubjectJobsPrefix + "<lane or target>" is where job specs are published.
	SubjectJobsPrefix = "jerichoci.jobs."
	// ConsumerWorkers is the durable pull consumer every worker pulls from.
	ConsumerWorkers = "jerichoci-workers"
	// StreamEvents keeps the lifecycle events for late readers.
	StreamEvents = "JERICHOCI_EVENTS"
	// SubjectRunsPrefix + "<job_id>.<run_id>.events" carries one run's events.
	SubjectRunsPrefix = "jerichoci.runs."
	// StreamLogs keeps the jobs' live output (host.log as it is written),
	// capped in size (oldest first out), for late readers.
	StreamLogs = "JERICHOCI_LOGS"
	// SubjectLogsPrefix + "<job_id>.<run_id>.<job>" carries one job's
	// output in chunks, in order, numbered by HeaderLogSeq.
	SubjectLogsPrefix = "jerichoci.logs."
	// SubjectCancelPrefix + "<job_id>" asks for a job to be cancelled.
	SubjectCancelPrefix = "jerichoci.cancel."
	// BucketJobs (KV) holds each job's claim: who runs it, in which run.
	BucketJobs = "jerichoci-jobs"
	// BucketResults (KV) holds each job's final run record.
	BucketResults = "jerichoci-results"
	// StreamDead keeps the dead letters: one message per job that ran out
	// of deliveries, on SubjectDeadPrefix + "<job_id>".
	StreamDead        = "JERICHOCI_DEAD"
	SubjectDeadPrefix = "jerichoci.dead."
	// BucketFleet (KV) holds, under FleetKey, the id of the fleet: the
	// daemons that share this work stream.
	BucketFleet = "jerichoci-fleet"
	FleetKey    = "id"
	// BucketSources (object store) holds source snapshots by content hash.
	BucketSources = "jerichoci-sources"
	// BucketRecords (object store) holds, as <job_id>.json, the whole final
	// record of a job whose record is too large for a KV value.
	BucketRecords = "jerichoci-records"

	// HeaderJobID, HeaderRunID, HeaderEvent and HeaderFinal are set on
	// every event message.
	HeaderJobID = "Jerichoci-Job-Id"
	HeaderRunID = "Jerichoci-Run-Id"
	HeaderEvent = "Jerichoci-Event"
	HeaderFinal = "Jerichoci-Final"
	// HeaderLogSeq numbers a job's log chunks from 1, so a reader sees a
	// gap (a chunk the stream's cap dropped).
	HeaderLogSeq = "Jerichoci-Log-Seq"
)

// LogSubject is the subject of one job's output in one run; its last
// token is SubjectJob(job).
func LogSubject(jobKey, runID, job string) string {
	return SubjectLogsPrefix + jobKey + "." + runID + "." + SubjectJob(job)
}

// SubjectJob is a catalog job id as a subject token (LogChunk.Job): a job
// id may hold '.', which a subject token may not: it becomes '_'.
func SubjectJob(job string) string { return strings.ReplaceAll(job, ".", "_") }

// EventSubject is the subject of one run's lifecycle events.
func EventSubject(jobKey, runID string) string {
	return SubjectRunsPrefix + jobKey + "." + runID + ".events"
}

// JobSubject is the work subject a spec for name is published on. A name
// is letters, digits, '.', '_' and '-' (model.ParseJobSpec), so it is a
// valid subject tail.
func JobSubject(name string) string { return SubjectJobsPrefix + name }

// SourceObjectName is the content-addressed name of a source tarball.
func SourceObjectName(sha256hex string) string { return "sha256-" + sha256hex + ".tar.gz" }

// UploadObjectName is the name Client.UploadSource gives a source tarball:
// its digest and a random part (hex) that only the uploader knows.
func UploadObjectName(sha256hex, random string) string {
	return "sha256-" + sha256hex + "-" + random + ".tar.gz"
}

var jobKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidJobKey reports whether s can key a job in the buckets and subjects:
// 1–128 letters, digits, '_' or '-' (a UUID qualifies).
func ValidJobKey(s string) bool { return jobKeyPattern.MatchString(s) }

// MaxResultValue is the largest value of the results bucket.
const MaxResultValue = 1 << 20

// ClaimState is where a job stands in the jobs bucket.
type ClaimState string

// Claim states (docs/PROTOCOL.md).
const (
	// ClaimRunning: a worker runs the job (run_id, worker); it refreshes the
	// claim every AckWait/3, so an old claim means a dead worker.
	ClaimRunning ClaimState = "running"
	// ClaimQueued: an attempt gave the job back to the queue (shutdown or
	// an infrastructure error); the next delivery takes it.
	ClaimQueued ClaimState = "queued"
	// ClaimCancelled: cancelled before any worker took it; the worker that
	// gets the message records it as cancelled without running it.
	ClaimCancelled ClaimState = "cancelled"
	// ClaimFinished: the final record is in the results bucket.
	ClaimFinished ClaimState = "finished"
)

// Claim is the value of jerichoci-jobs.<job_id>: the fence that keeps a
// redelivered or republished job from running twice.
type Claim struct {
	JobID           string          `json:"job_id"`
	State           ClaimState      `json:"state"`
	RunID           string          `json:"run_id"`               // the current (or last) attempt's run
	Worker          string          `json:"worker"`               // the worker of that attempt
	Attempt         uint64          `json:"attempt"`              // the delivery that started it
	StreamSeq       uint64          `json:"stream_seq,omitempty"` // the work message the attempt came from
	LastError       string          `json:"last_error,omitempty"` // why the last attempt handed the job back
	Status          model.RunStatus `json:"status,omitempty"`     // finished: the final run status
	CancelRequested bool            `json:"cancel_requested"`
	UpdatedAt       model.Timestamp `json:"updated_at"`
}

// CancelReply answers a cancel request (docs/PROTOCOL.md).
type CancelReply struct {
	JobID string `json:"job_id"`
	// State is the job's claim state after the request: cancelled (it had
	// not started), running (it is being stopped), queued (it will be
	// recorded as cancelled when next delivered) or finished (too late).
	State   ClaimState `json:"state,omitempty"`
	RunID   string     `json:"run_id,omitempty"`
	Message string     `json:"message"`
	Error   string     `json:"error,omitempty"`
}

// RecordMarkerKey is the key that a trimmed record in the results bucket
// (or in a run_finished event) carries next to the record's own fields.
const RecordMarkerKey = "jerichoci_record"

// RecordMarker says that a record was trimmed to fit and where the whole
// one is. Bucket and Object are empty when it could not be stored.
type RecordMarker struct {
	Trimmed bool   `json:"trimmed"`
	Bucket  string `json:"bucket,omitempty"`
	Object  string `json:"object,omitempty"`
	Bytes   int    `json:"bytes"` // the whole record's compact JSON
}

// RecordObjectName names a job's whole record in BucketRecords.
func RecordObjectName(jobKey string) string { return jobKey + ".json" }

// JobFile is runs/<run_id>/jerichoci-job.json: which job and delivery a
// daemon run belongs to.
type JobFile struct {
	JobID     string `json:"job_id"`
	Worker    string `json:"worker"`
	Delivery  uint64 `json:"delivery"`
	StreamSeq uint64 `json:"stream_seq"`
	// Requester is the job spec's requester, when it names one.
	Requester string `json:"requester,omitempty"`
	// EnqueuedAt is when the job message entered the work stream (RFC
	// 3339, UTC): with the run's first job start, its queue wait.
	EnqueuedAt string `json:"enqueued_at,omitempty"`
	// Lane is the job spec's lane title, when it names a lane.
	Lane string `json:"lane,omitempty"`
	// Group is the job spec's group (the push the job belongs to), when
	// it names one.
	Group *model.JobGroup `json:"group,omitempty"`
}

// JobFileName is the name of JobFile in a run directory.
const JobFileName = "jerichoci-job.json"

// DeadLetter is the payload of a dead letter: a job that ran out of
// deliveries. Its final record (failed) is in the results bucket too.
type DeadLetter struct {
	JobID      string `json:"job_id"`
	StreamSeq  uint64 `json:"stream_seq"`  // the work message
	Deliveries uint64 `json:"deliveries"`  // how often it was delivered
	MaxDeliver int    `json:"max_deliver"` // the consumer's limit
	RunID      string `json:"run_id"`      // the final (failed) record's run
	// LastError is the last attempt's infrastructure error, when one was
	// recorded; empty when the last worker died without a word.
	LastError string `json:"last_error,omitempty"`
	Message   string `json:"message"` // the final record's message
	At        string `json:"at"`      // RFC 3339, when it was given up
}

// DeadSubject is the subject of a job's dead letter.
func DeadSubject(jobKey string) string { return SubjectDeadPrefix + jobKey }
