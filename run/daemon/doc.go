// Package daemon is the worker side of `jerichoci serve`: a pool of workers
// that take jobs from the NATS JetStream work queue one at a time and run
// each through run.Runner (docs/PROTOCOL.md, "The daemon on NATS
// JetStream").
//
// One delivery is one attempt: the worker admits it (decodes the job spec
// and resolves its lane or target; admit.go), fences the job with a claim
// in the jobs bucket (every change one compare-and-swap under one retry
// policy, refreshed every heartbeat; claim.go), fetches and unpacks the
// source (an object-store tarball through a content-addressed cache, or a
// host path under the allowed root), runs the plan (attempt.go), and
// settles (settle.go): classify decides between a final record and a
// retry, the record goes to the state root and the final one to the
// results bucket (an outcome classify decides too when it fails), the
// run_finished event is published, and only then is the message answered. Around the attempts
// live cancellation, the dead letters of jobs out of deliveries, the reaper
// of instances whose job is provably over, the closing of runs an earlier
// process left running, and the live logs published as host.log grows.
//
// Connections, Incus and metrics stay outside: the package declares the
// small interfaces it needs, over nats.go's message and KV types (Source and
// Message, KV, Publisher, SourceStore, RecordStore, InstanceManager,
// DeadLetterSink, Observer), and cmd/jerichoci fills them. It never imports
// executor/incus (scripts/check-imports).
package daemon
