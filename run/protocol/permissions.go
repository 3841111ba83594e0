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
	// answers cancels.
	RoleWorker Role = "worker"
	// RoleClient queues jobs, asks for cancels, uploads sources and reads
	// results, claims, events and logs. It cannot write a claim or a
	// result, touch the workers' consumer, read or list the sources, or
	// create, change, delete or purge a stream.
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
// their flow control.
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

// dangerous is denied to clients and readers whatever their allow list
// says: changing or removing streams and their messages, the workers'
// consumer, acknowledgements, writing buckets, and reading (or listing)
// the sources, whose names must stay unknown to other clients.
var dangerous = []string{
	jsAPI + "STREAM.CREATE.>", jsAPI + "STREAM.UPDATE.>", jsAPI + "STREAM.DELETE.>", jsAPI + "STREAM.PURGE.>",
	jsAPI + "STREAM.MSG.DELETE.>", jsAPI + "STREAM.SNAPSHOT.>", jsAPI + "STREAM.RESTORE.>", jsAPI + "STREAM.LEADER.>",
	jsAPI + "STREAM.PEER.>", jsAPI + "CONSUMER.DURABLE.>", jsAPI + "CONSUMER.LEADER.>",
	jsAPI + "CONSUMER.*." + StreamJobs, jsAPI + "CONSUMER.*." + StreamJobs + ".>",
	jsAPI + "CONSUMER.MSG.NEXT." + StreamJobs + ".>",
	jsAPI + "STREAM.INFO." + streamOBJSources, jsAPI + "STREAM.MSG.GET." + streamOBJSources,
	jsAPI + "DIRECT.GET." + streamOBJSources, jsAPI + "DIRECT.GET." + streamOBJSources + ".>",
	jsAPI + "CONSUMER.*." + streamOBJSources, jsAPI + "CONSUMER.*." + streamOBJSources + ".>",
	jsAPI + "CONSUMER.MSG.NEXT." + streamOBJSources + ".>",
	jsAPI + "STREAM.MSG.GET." + StreamJobs, jsAPI + "DIRECT.GET." + StreamJobs, jsAPI + "DIRECT.GET." + StreamJobs + ".>",
	"$JS.ACK.>", "$KV.>", "$O." + BucketRecords + ".>", "$SYS.>",
}

// privateSubscriptions are never readers' or clients': the job specs
// (they name the sources), the sources' own subjects, the worker's inbox,
// and the server's events.
var privateSubscriptions = []string{
	SubjectJobsPrefix + ">", "$O.>", "$KV.>", "$JS.>", WorkerInboxPrefix + ".>", "$SYS.>",
}

// readerPublish is what reading results, claims, events and logs needs.
func readerPublish() []string {
	allow := []string{jsAPI + "INFO"}
	for _, s := range []string{streamKVResults, streamKVJobs, StreamEvents, StreamLogs} {
		allow = append(allow, readMessages(s)...)
		allow = append(allow, readConsumers(s)...)
	}
	return append(allow, jsAPI+"STREAM.INFO."+StreamJobs, jsAPI+"STREAM.INFO."+StreamDead)
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
		// Sources and records are read through ordered consumers; the status
		// page replays the logs.
		for _, s := range []string{streamOBJSources, streamOBJRecords, StreamLogs, StreamEvents, streamKVResults, streamKVJobs} {
			pub = append(pub, readConsumers(s)...)
		}
		return Permissions{
			Publish: SubjectRules{Allow: pub, Deny: []string{
				jsAPI + "STREAM.DELETE.>", jsAPI + "STREAM.PURGE." + StreamJobs, jsAPI + "CONSUMER.DELETE." + StreamJobs + ".>",
				"$O." + BucketSources + ".>", SubjectJobsPrefix + ">", "$SYS.>"}},
			Subscribe: SubjectRules{Allow: []string{
				WorkerInboxPrefix + ".>", SubjectCancelPrefix + "*",
				"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamJobs + "." + ConsumerWorkers,
			}},
			AllowResponses: true,
		}
	case RoleClient:
		pub := append(readerPublish(),
			SubjectJobsPrefix+">", SubjectCancelPrefix+"*",
			// Uploads: chunks and the object's description, never a read.
			"$O."+BucketSources+".C.>", "$O."+BucketSources+".M.>")
		return Permissions{
			Publish:   SubjectRules{Allow: pub, Deny: dangerous},
			Subscribe: SubjectRules{Allow: []string{"_INBOX.>", SubjectRunsPrefix + ">", SubjectLogsPrefix + ">"}, Deny: privateSubscriptions},
		}
	case RoleReader:
		return Permissions{
			Publish: SubjectRules{Allow: readerPublish(), Deny: append([]string{
				SubjectJobsPrefix + ">", SubjectCancelPrefix + ">", SubjectRunsPrefix + ">", SubjectLogsPrefix + ">",
				SubjectDeadPrefix + ">", "$O.>"}, dangerous...)},
			Subscribe: SubjectRules{Allow: []string{"_INBOX.>", SubjectRunsPrefix + ">", SubjectLogsPrefix + ">"}, Deny: privateSubscriptions},
		}
	}
	return Permissions{}
}

// Roles lists the roles in the order the configuration names them.
func Roles() []Role { return []Role{RoleWorker, RoleClient, RoleReader} }
