package daemon_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/run/protocol"
)

// checkNoConsumers: as user (a client or reader), every form of consumer
// creation on the streams it reads, and a push consumer delivering onto
// another job's results key, are refused as permissions violations; a
// direct get of a record sent with that key as its reply subject stores
// nothing there (the answer stays in the clients' account):
// checkVictimHasNoResult looks.
func checkNoConsumers(t *testing.T, u string, user natsUser, victim string) {
	t.Helper()
	nc, violations := violationConn(t, u, user)
	push, _ := json.Marshal(map[string]any{"stream_name": protocol.StreamLogs, "config": map[string]any{
		"name": "push", "deliver_subject": "$KV." + protocol.BucketResults + "." + victim, "ack_policy": "none",
		"deliver_policy": "all", "filter_subject": protocol.SubjectLogsPrefix + ">"}})
	plain, _ := json.Marshal(map[string]any{"stream_name": protocol.StreamLogs, "config": map[string]any{"ack_policy": "none"}})
	for _, stream := range []string{protocol.StreamLogs, protocol.StreamEvents, "KV_" + protocol.BucketResults, "KV_" + protocol.BucketJobs} {
		api := "$JS.API.CONSUMER."
		checkRefusedRequest(t, nc, violations, user.name+": legacy consumer create on "+stream, api+"CREATE."+stream, plain)
		checkRefusedRequest(t, nc, violations, user.name+": named consumer create on "+stream, api+"CREATE."+stream+".mine", plain)
		checkRefusedRequest(t, nc, violations, user.name+": filtered consumer create on "+stream, api+"CREATE."+stream+".mine."+protocol.SubjectLogsPrefix+">", plain)
		checkRefusedRequest(t, nc, violations, user.name+": durable consumer create on "+stream, api+"DURABLE.CREATE."+stream+".mine", plain)
	}
	checkRefusedRequest(t, nc, violations, user.name+": push consumer onto the victim's result",
		"$JS.API.CONSUMER.CREATE."+protocol.StreamLogs+".push."+protocol.SubjectLogsPrefix+">", push)
	// A direct get it may make, its answer sent to the victim's key.
	get := "$JS.API.DIRECT.GET.KV_" + protocol.BucketResults + ".$KV." + protocol.BucketResults + "." + uuid.NewString()
	if err := nc.PublishRequest(get, "$KV."+protocol.BucketResults+"."+victim, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := nc.RequestWithContext(ctx, get, nil); err != nil {
		t.Errorf("%s: a direct get of the results: %v", user.name, err)
	}
}

// checkVictimHasNoResult: the client's own read of the victim's key finds
// nothing.
func checkVictimHasNoResult(t *testing.T, u string, user natsUser, victim string) {
	t.Helper()
	nc, err := nats.Connect(u, nats.UserInfo(user.name, user.password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := protocol.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if rec, err := c.Result(ctx, victim); err != nil || rec != nil {
		t.Errorf("the victim's result after the attempts: %+v, %v; want none", rec, err)
	}
}

// newEmbeddedOrchestrator is an orchestrator on the embedded server of
// stateRoot: it queues jobs, uploads sources and subscribes (nc) as the
// client (c), and reads results, claims and streams (js) as the worker
// (worker.json), since the client reads only by direct gets
// (docs/PROTOCOL.md).
func newEmbeddedOrchestrator(t *testing.T, stateRoot string, c natsClientFile) *orchestrator {
	t.Helper()
	w := readNATSUserFile(t, stateRoot, "worker.json")
	o := newOrchestrator(t, c.URL, nats.UserInfo(w.User, w.Password), nats.CustomInboxPrefix(protocol.WorkerInboxPrefix))
	nc, err := nats.Connect(c.URL, nats.UserInfo(c.User, c.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if o.client, err = protocol.NewClient(nc); err != nil {
		t.Fatal(err)
	}
	if o.pub, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	o.nc = nc
	return o
}
