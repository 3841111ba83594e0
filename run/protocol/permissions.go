package protocol

// The NATS users of a jerichoci fleet and what each may do
// (docs/PROTOCOL.md, "Users and permissions"). The embedded server of
// `jerichoci serve` gives these users exactly these permissions, and the
// nats-server configuration in docs/PROTOCOL.md is rendered from them.

// Role names a NATS user of the fleet.
type Role string

// The roles (docs/PROTOCOL.md).
const (
	// RoleWorker is the daemon: it sets up and pulls from the work queue,
	// writes claims, results, records, events and logs, reads sources and
	// answers cancels and catalog requests.
	RoleWorker Role = "worker"
	// RoleClient queues jobs, asks for cancels and the daemons' catalog,
	// uploads sources and reads results, claims, events and logs. It
	// cannot write a claim or a result, touch the workers' consumer, read
	// or list the sources, or create, change, delete or purge a stream.
	RoleClient Role = "client"
	// RoleReader only reads results, claims, events and logs (the status
	// page, `logs --follow`).
	RoleReader Role = "reader"
)

// WorkerInboxPrefix is the inbox prefix of the worker's connections: the
// replies to its requests (pulled jobs among them) arrive under it, where
// no client or reader may subscribe. Clients and readers use the default
// "_INBOX".
const WorkerInboxPrefix = "_INBOX_worker"

// SubjectRules allows and denies subjects; a denial wins.
type SubjectRules struct {
	Allow []string
	Deny  []string
}

// Permissions is what one user may publish and subscribe to.
type Permissions struct {
	Publish   SubjectRules
	Subscribe SubjectRules
	// AllowResponses lets the user answer requests it received (the
	// worker's cancel replies) on their reply subjects, once each.
	AllowResponses bool
}

const (
	jsAPI = "$JS.API."
	// The streams behind the buckets and object stores.
	streamKVJobs     = "KV_" + BucketJobs
	streamKVResults  = "KV_" + BucketResults
	streamKVFleet    = "KV_" + BucketFleet
	streamOBJSources = "OBJ_" + BucketSources
	streamOBJRecords = "OBJ_" + BucketRecords
)

// ownStreams are the streams the daemon creates.
var ownStreams = []string{StreamJobs, StreamEvents, StreamLogs, StreamDead,
	streamKVJobs, streamKVResults, streamKVFleet, streamOBJSources, streamOBJRecords}

// readConsumers are the rights to read a stream through ephemeral
// (ordered) consumers: create, pull, look at and delete them, and answer
// their flow control. Only the worker has them.
func readConsumers(stream string) []string {
	return []string{
		jsAPI + "CONSUMER.CREATE." + stream, jsAPI + "CONSUMER.CREATE." + stream + ".>",
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*",
		jsAPI + "CONSUMER.INFO." + stream + ".*",
		jsAPI + "CONSUMER.DELETE." + stream + ".*",
		"$JS.FC." + stream + ".>",
	}
}

// readMessages are the rights to get single messages of a stream (KV Get
// and object info, by sequence or last by subject).
func readMessages(stream string) []string {
	return []string{jsAPI + "STREAM.INFO." + stream, jsAPI + "STREAM.MSG.GET." + stream,
		jsAPI + "DIRECT.GET." + stream, jsAPI + "DIRECT.GET." + stream + ".>"}
}

// The accounts of a fleet (docs/PROTOCOL.md). The server answers a
// JetStream request on whatever reply subject the requester names, and a
// stream stores what arrives on its subjects, whoever sent it: within one
// account, any user who may make one request could have the answer (a
// stored message, say its own job's output) stored as another job's
// result. So JetStream lives in AccountFleet, where only the worker (and
// the embedded server's admin) connect, and clients and readers are in
// AccountClients, which reaches the fleet only through Exports: an
// answer to them goes to a subject of their own account, where no stream
// is.
const (
	AccountFleet   = "JERICHOCI"
	AccountClients = "JERICHOCI_CLIENTS"
)

// Account is the account of role's users.
func (r Role) Account() string {
	if r == RoleWorker {
		return AccountFleet
	}
	return AccountClients
}

// Export is a subject of AccountFleet that AccountClients imports under
// the same name: a service (requests go to the fleet, the answers come
// back) or a stream (the fleet's messages are seen in AccountClients).
type Export struct {
	Subject string
	Service bool
	// Streamed: a service request gets many answers (a batched direct get).
	Streamed bool
}

// Direct-get subjects of the clients' reads (docs/PROTOCOL.md): the last
// value of one key of the results or claims, and messages of the logs
// stream (a JSON request: next_by_subj, batch).
const (
	DirectGetResults = jsAPI + "DIRECT.GET." + streamKVResults + ".$KV." + BucketResults + ".*"
	DirectGetClaims  = jsAPI + "DIRECT.GET." + streamKVJobs + ".$KV." + BucketJobs + ".*"
	DirectGetLogs    = jsAPI + "DIRECT.GET." + StreamLogs
)

// Exports is all that AccountClients sees of AccountFleet: queueing jobs,
// cancels, the catalog request, uploads, the direct gets of results,
// claims and logs, and the live events, logs and key changes. No consumer, no stream API.
func Exports() []Export {
	return []Export{
		{Subject: SubjectJobsPrefix + ">", Service: true},
		{Subject: SubjectCancelPrefix + "*", Service: true},
		{Subject: SubjectCatalog, Service: true},
		{Subject: SubjectLookupPrefix + "*", Service: true},
		{Subject: "$O." + BucketSources + ".C.>", Service: true},
		{Subject: "$O." + BucketSources + ".M.>", Service: true},
		{Subject: DirectGetResults, Service: true},
		{Subject: DirectGetClaims, Service: true},
		{Subject: DirectGetLogs, Service: true, Streamed: true},
		{Subject: SubjectRunsPrefix + ">"},
		{Subject: SubjectLogsPrefix + ">"},
		{Subject: "$KV." + BucketResults + ".*"},
		{Subject: "$KV." + BucketJobs + ".*"},
	}
}

// dangerous is denied to clients and readers whatever their allow list
// says (their account reaches none of it anyway): the stream and consumer
// API (no consumer of their own: a push consumer delivers wherever its
// creator says), acknowledgements, writing buckets, records, and the
// server's subjects.
var dangerous = []string{
	jsAPI + "STREAM.>", jsAPI + "CONSUMER.>", "$JS.ACK.>", "$JS.FC.>",
	jsAPI + "DIRECT.GET." + streamOBJSources, jsAPI + "DIRECT.GET." + streamOBJSources + ".>",
	jsAPI + "DIRECT.GET." + StreamJobs, jsAPI + "DIRECT.GET." + StreamJobs + ".>",
	"$KV.>", "$O." + BucketRecords + ".>", "$SYS.>",
}

// privateSubscriptions are never readers' or clients': the job specs
// (they name the sources), the sources' own subjects, the worker's inbox,
// and the server's events.
var privateSubscriptions = []string{
	SubjectJobsPrefix + ">", "$O.>", "$JS.>", WorkerInboxPrefix + ".>", "$SYS.>",
}

// readerSubscribe is what reading results, claims, events and logs needs:
// the replies, the live messages and the keys' changes.
var readerSubscribe = []string{"_INBOX.>", SubjectRunsPrefix + ">", SubjectLogsPrefix + ">",
	"$KV." + BucketResults + ".*", "$KV." + BucketJobs + ".*"}

// readerPublish is what reading results, claims and logs needs: direct
// gets, and lookups of where a job stands.
func readerPublish() []string {
	return []string{DirectGetResults, DirectGetClaims, DirectGetLogs, SubjectLookupPrefix + "*"}
}

// RolePermissions returns what role may do.
func RolePermissions(role Role) Permissions {
	switch role {
	case RoleWorker:
		pub := []string{jsAPI + "INFO",
			// The work queue: its consumer and the give-ups (read the
			// message, delete it).
			jsAPI + "CONSUMER.CREATE." + StreamJobs + "." + ConsumerWorkers,
			jsAPI + "CONSUMER.CREATE." + StreamJobs + "." + ConsumerWorkers + ".>",
			jsAPI + "CONSUMER.INFO." + StreamJobs + "." + ConsumerWorkers,
			jsAPI + "CONSUMER.MSG.NEXT." + StreamJobs + "." + ConsumerWorkers,
			"$JS.ACK." + StreamJobs + "." + ConsumerWorkers + ".>",
			jsAPI + "STREAM.MSG.DELETE." + StreamJobs,
			// What it writes.
			SubjectRunsPrefix + ">", SubjectLogsPrefix + ">", SubjectDeadPrefix + ">",
			"$KV." + BucketJobs + ".>", "$KV." + BucketResults + ".>", "$KV." + BucketFleet + ".>",
			"$O." + BucketRecords + ".>",
			// A record stored again replaces its chunks.
			jsAPI + "STREAM.PURGE." + streamOBJRecords,
		}
		for _, s := range ownStreams {
			pub = append(pub, jsAPI+"STREAM.CREATE."+s, jsAPI+"STREAM.UPDATE."+s)
			pub = append(pub, readMessages(s)...)
		}
		// Sources and records are read through ordered consumers, and so
		// may the rest (tools that run as the worker); never the work
		// stream, whose only consumer is the workers'.
		for _, s := range ownStreams {
			if s != StreamJobs {
				pub = append(pub, readConsumers(s)...)
			}
		}
		pub = append(pub, jsAPI+"STREAM.NAMES")
		return Permissions{
			Publish: SubjectRules{Allow: pub, Deny: []string{
				jsAPI + "STREAM.DELETE.>", jsAPI + "STREAM.PURGE." + StreamJobs, jsAPI + "CONSUMER.DELETE." + StreamJobs + ".>",
				"$O." + BucketSources + ".>", SubjectJobsPrefix + ">", "$SYS.>"}},
			Subscribe: SubjectRules{Allow: []string{
				WorkerInboxPrefix + ".>", SubjectCancelPrefix + "*", SubjectCatalog, SubjectLookupPrefix + "*",
				"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamJobs + "." + ConsumerWorkers,
			}},
			AllowResponses: true,
		}
	case RoleClient:
		pub := append(readerPublish(),
			SubjectJobsPrefix+">", SubjectCancelPrefix+"*", SubjectCatalog,
			// Uploads: chunks and the object's description, never a read.
			"$O."+BucketSources+".C.>", "$O."+BucketSources+".M.>")
		return Permissions{
			Publish:   SubjectRules{Allow: pub, Deny: dangerous},
			Subscribe: SubjectRules{Allow: readerSubscribe, Deny: privateSubscriptions},
		}
	case RoleReader:
		return Permissions{
			Publish: SubjectRules{Allow: readerPublish(), Deny: append([]string{
				SubjectJobsPrefix + ">", SubjectCancelPrefix + ">", SubjectRunsPrefix + ">", SubjectLogsPrefix + ">",
				SubjectDeadPrefix + ">", "$O.>"}, dangerous...)},
			Subscribe: SubjectRules{Allow: readerSubscribe, Deny: privateSubscriptions},
		}
	}
	return Permissions{}
}

// Roles lists the roles in the order the configuration names them.
func Roles() []Role { return []Role{RoleWorker, RoleClient, RoleReader} }
