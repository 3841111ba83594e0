package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
	"jerichoci/targets"
)

// oneAccountServer is the embedded server as it was before the clients had
// an account of their own: the same users with the same permissions, all
// in one account. It is the control that shows what the accounts stop.
func oneAccountServer(t *testing.T) usersServer {
	t.Helper()
	listen, state, users := testEmbeddedUsers(t)
	host, port, _ := splitListen(listen)
	opts := &server.Options{Host: host, Port: port, JetStream: true, StoreDir: filepath.Join(state, "nats"), NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: users.Admin.User, Password: users.Admin.Password}}}
	for _, role := range protocol.Roles() {
		p := protocol.RolePermissions(role)
		opts.Users = append(opts.Users, &server.User{Username: string(role), Password: users.Roles[role].Password, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish.Allow, Deny: p.Publish.Deny},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny},
		}})
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	s := usersServer{url: srv.ClientURL(), users: users}
	if s.admin, err = nats.Connect(s.url, nats.UserInfo(users.Admin.User, users.Admin.Password)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.admin.Close)
	if _, err := daemon.OpenQueue(t.Context(), s.admin, daemon.DefaultQueueConfig()); err != nil {
		t.Fatal(err)
	}
	return s
}

// attackerJob is what an attacker's own job left in the fleet: its
// (real, passed) record, and a log chunk whose bytes its branch printed,
// a passed record too.
func attackerJob(t *testing.T, s usersServer) (id string) {
	t.Helper()
	admin, err := jetstream.New(s.admin)
	if err != nil {
		t.Fatal(err)
	}
	id = uuid.NewString()
	passed, _ := json.Marshal(model.RunRecord{RunID: "attacker", Status: model.StatusPassed})
	m := nats.NewMsg(protocol.LogSubject(id, "run", "job"))
	m.Header.Set(protocol.HeaderLogSeq, "1")
	m.Data = passed
	if _, err := admin.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	results, err := admin.KeyValue(t.Context(), protocol.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := results.Put(t.Context(), id, passed); err != nil {
		t.Fatal(err)
	}
	return id
}

// redirect sends a request the role may make with reply as its reply
// subject, then the same with a reply of its own and waits for that
// answer: the server has handled the first by then.
func redirect(t *testing.T, nc *nats.Conn, subject, reply string, data []byte) {
	t.Helper()
	if err := nc.PublishRequest(subject, reply, data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := nc.RequestWithContext(ctx, subject, data); err != nil {
		t.Fatalf("%s as a request of its own: %v", subject, err)
	}
}

// forgedIn reports what the fleet stored under victim: its result, its
// claim, and how many job messages wait.
func forgedIn(t *testing.T, s usersServer, victim string) (result, claim string, jobs uint64) {
	t.Helper()
	admin, _ := jetstream.New(s.admin)
	for _, kv := range []struct {
		bucket string
		dst    *string
	}{{protocol.BucketResults, &result}, {protocol.BucketJobs, &claim}} {
		b, err := admin.KeyValue(t.Context(), kv.bucket)
		if err != nil {
			t.Fatal(err)
		}
		if e, err := b.Get(t.Context(), victim); err == nil {
			*kv.dst = string(e.Value())
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatal(err)
		}
	}
	st, err := admin.Stream(t.Context(), protocol.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return result, claim, info.State.Msgs
}

// TestNATSRepliesCannotForgeResults: the server sends the answer to a
// request to whatever reply subject the requester names, and a stream
// stores what arrives on its subjects. With the users in one account (the
// control), a reader's direct get of its own job's passed record, sent
// with the reply subject of another job's results key, becomes that job's
// result. With the clients' account, no request a client or reader may
// make stores anything in the fleet, wherever its answer is sent.
func TestNATSRepliesCannotForgeResults(t *testing.T) {
	getRecord := func(id string) string {
		return strings.TrimSuffix(protocol.DirectGetResults, "*") + id
	}
	t.Run("control: one account", func(t *testing.T) {
		s := oneAccountServer(t)
		attacker, victim := attackerJob(t, s), uuid.NewString()
		nc, _ := s.connect(t, protocol.RoleReader)
		redirect(t, nc, getRecord(attacker), "$KV."+protocol.BucketResults+"."+victim, nil)
		result, _, _ := forgedIn(t, s, victim)
		var rec model.RunRecord
		if err := json.Unmarshal([]byte(result), &rec); err != nil || rec.Status != model.StatusPassed {
			t.Fatalf("in one account the redirected answer was not stored as the victim's result (%q, %v): this test cannot see the attack", result, err)
		}
		t.Logf("one account: the reader stored the victim's result %s", result)
	})
	t.Run("the clients' account", func(t *testing.T) {
		s := startUsersServer(t)
		attacker, victim := attackerJob(t, s), uuid.NewString()
		_, _, jobsBefore := forgedIn(t, s, victim)
		replies := []string{"$KV." + protocol.BucketResults + "." + victim, "$KV." + protocol.BucketJobs + "." + victim,
			protocol.JobSubject("demo-pass"), protocol.LogSubject(victim, "run", "job"), protocol.EventSubject(victim, "run")}
		batch, _ := json.Marshal(map[string]any{"seq": 1, "next_by_subj": protocol.SubjectLogsPrefix + attacker + ".>", "batch": 10})
		spec, _ := json.Marshal(model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: uuid.New(), Target: "demo-fail",
			Source: model.SourceRef{Kind: model.SourceHostPath, Path: "/srv/src"}, ChangedFiles: []string{}})
		requests := map[protocol.Role][]struct {
			subject string
			data    []byte
		}{
			protocol.RoleReader: {
				{getRecord(attacker), nil},
				{strings.TrimSuffix(protocol.DirectGetClaims, "*") + attacker, nil},
				{protocol.DirectGetLogs, batch},
			},
			protocol.RoleClient: {
				{getRecord(attacker), nil},
				{protocol.DirectGetLogs, batch},
				// The acknowledgements of a queued job and of an upload.
				{protocol.JobSubject("demo-fail"), spec},
				{"$O." + protocol.BucketSources + ".C." + strings.ReplaceAll(uuid.NewString(), "-", ""), []byte("chunk")},
			},
		}
		queued := uint64(0)
		for _, role := range []protocol.Role{protocol.RoleReader, protocol.RoleClient} {
			nc, _ := s.connect(t, role)
			for _, r := range requests[role] {
				for _, reply := range replies {
					if r.subject == protocol.JobSubject("demo-fail") {
						queued += 2 // the redirected one and our own
					}
					redirect(t, nc, r.subject, reply, r.data)
				}
			}
		}
		result, claim, jobs := forgedIn(t, s, victim)
		if result != "" || claim != "" {
			t.Errorf("the victim's result %q, claim %q; want none", result, claim)
		}
		if jobs != jobsBefore+queued {
			t.Errorf("%d job messages, want %d (only the jobs queued): an answer was stored as a job", jobs, jobsBefore+queued)
		}
		admin, _ := jetstream.New(s.admin)
		for _, stream := range []string{protocol.StreamLogs, protocol.StreamEvents} {
			st, err := admin.Stream(t.Context(), stream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(">"))
			if err != nil {
				t.Fatal(err)
			}
			for subj := range info.State.Subjects {
				if strings.Contains(subj, victim) {
					t.Errorf("stream %s stored an answer on %s", stream, subj)
				}
			}
		}
	})
}

// TestNATSClientsCreateNoConsumer: every form of consumer creation (and
// the rest of the consumer and stream API) is refused to the client and the
// reader as a permissions violation, on every stream they read; a push
// consumer delivering a job's output onto another job's results key is
// refused, and nothing is stored there.
func TestNATSClientsCreateNoConsumer(t *testing.T) {
	s := startUsersServer(t)
	attacker, victim := attackerJob(t, s), uuid.NewString()
	push, _ := json.Marshal(map[string]any{"stream_name": protocol.StreamLogs, "config": map[string]any{
		"name": "push", "deliver_subject": "$KV." + protocol.BucketResults + "." + victim, "ack_policy": "none",
		"deliver_policy": "all", "filter_subject": protocol.SubjectLogsPrefix + attacker + ".>"}})
	ephemeral, _ := json.Marshal(map[string]any{"stream_name": protocol.StreamLogs, "config": map[string]any{"ack_policy": "none"}})
	for _, role := range []protocol.Role{protocol.RoleClient, protocol.RoleReader} {
		nc, violations := s.connect(t, role)
		type refusal struct {
			name, subject string
			data          []byte
		}
		var tests []refusal
		for _, stream := range []string{protocol.StreamLogs, protocol.StreamEvents, "KV_" + protocol.BucketResults, "KV_" + protocol.BucketJobs} {
			api := "$JS.API.CONSUMER."
			tests = append(tests,
				refusal{"legacy ephemeral create on " + stream, api + "CREATE." + stream, ephemeral},
				refusal{"named create on " + stream, api + "CREATE." + stream + ".mine", ephemeral},
				refusal{"named create with a filter on " + stream, api + "CREATE." + stream + ".mine." + protocol.SubjectLogsPrefix + ">", ephemeral},
				refusal{"durable create on " + stream, api + "DURABLE.CREATE." + stream + ".mine", ephemeral},
				refusal{"consumer info on " + stream, api + "INFO." + stream + ".mine", nil},
				refusal{"consumer delete on " + stream, api + "DELETE." + stream + ".mine", nil},
				refusal{"consumer names on " + stream, api + "NAMES." + stream, nil},
				refusal{"consumer list on " + stream, api + "LIST." + stream, nil},
				refusal{"pull next on " + stream, api + "MSG.NEXT." + stream + ".mine", []byte(`{"batch":1}`)},
				refusal{"stream info of " + stream, "$JS.API.STREAM.INFO." + stream, nil},
				refusal{"message get on " + stream, "$JS.API.STREAM.MSG.GET." + stream, []byte(`{"seq":1}`)},
			)
		}
		tests = append(tests,
			refusal{"the push consumer onto the victim's result", "$JS.API.CONSUMER.CREATE." + protocol.StreamLogs + ".push." + protocol.SubjectLogsPrefix + attacker + ".>", push},
			refusal{"the same, legacy form", "$JS.API.CONSUMER.CREATE." + protocol.StreamLogs, push},
			refusal{"account info", "$JS.API.INFO", nil},
		)
		for _, tc := range tests {
			t.Run(string(role)+": "+tc.name, func(t *testing.T) {
				expectViolation(t, violations, "Publish to", tc.subject, request(nc, tc.subject, tc.data))
			})
		}
	}
	if result, _, _ := forgedIn(t, s, victim); result != "" {
		t.Errorf("the victim's result is %q; want none", result)
	}
	admin, _ := jetstream.New(s.admin)
	for _, stream := range []string{protocol.StreamLogs, protocol.StreamEvents, "KV_" + protocol.BucketResults, "KV_" + protocol.BucketJobs} {
		st, err := admin.Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := st.Info(t.Context()); err != nil || info.State.Consumers != 0 {
			t.Errorf("stream %s: %v consumers (%v), want none", stream, info.State.Consumers, err)
		}
	}
}

// TestNATSForeignAnswersReachNoWatchNorFollow: within the clients' account
// a client can still send a server's answer onto another client's
// subjects: a direct get of its own passed record onto the victim's
// results key, of its own output (a passed record, numbered as a chunk)
// onto the victim's log and event subjects, and into the victim's inbox.
// The victim's watch and log follower take none of it: the watch ends
// with the real record, the follower shows only the real chunks.
func TestNATSForeignAnswersReachNoWatchNorFollow(t *testing.T) {
	s := startUsersServer(t)
	attacker, victim := attackerJob(t, s), uuid.NewString()
	vnc, _ := s.connect(t, protocol.RoleClient)
	vc, err := protocol.NewClient(vnc)
	if err != nil {
		t.Fatal(err)
	}
	anc, _ := s.connect(t, protocol.RoleClient)
	inboxes, err := anc.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := anc.Flush(); err != nil {
		t.Fatal(err)
	}
	w, err := vc.Watch(t.Context(), victim)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	var chunks []protocol.LogChunk
	stop, err := vc.FollowLogs(t.Context(), victim, true, func(c protocol.LogChunk) {
		mu.Lock()
		defer mu.Unlock()
		chunks = append(chunks, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The victim's inbox, from its direct gets' answers.
	m, err := inboxes.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no answer to the victim on _INBOX.>: %v", err)
	}
	batch, _ := json.Marshal(map[string]any{"seq": 1, "next_by_subj": protocol.SubjectLogsPrefix + attacker + ".>", "batch": 10})
	getRecord := strings.TrimSuffix(protocol.DirectGetResults, "*") + attacker
	getOwnRecord := strings.TrimSuffix(protocol.DirectGetResults, "*") + victim
	for _, reply := range []string{"$KV." + protocol.BucketResults + "." + victim, protocol.LogSubject(victim, "forged", "job"),
		protocol.EventSubject(victim, "forged"), m.Subject} {
		redirect(t, anc, getRecord, reply, nil)
		redirect(t, anc, protocol.DirectGetLogs, reply, batch)
		if reply == m.Subject {
			continue
		}
		redirect(t, anc, getOwnRecord, reply, nil)
	}
	// The real event, chunk and record, by the worker.
	wnc, _ := s.connect(t, protocol.RoleWorker)
	wjs, _ := jetstream.New(wnc)
	ev := nats.NewMsg(protocol.EventSubject(victim, "real"))
	ev.Header.Set(protocol.HeaderJobID, victim)
	ev.Data, _ = json.Marshal(model.LifecycleEvent{Event: model.EventRunStarted, RunID: "real"})
	if _, err := wjs.PublishMsg(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	chunk := nats.NewMsg(protocol.LogSubject(victim, "real", "job"))
	chunk.Header.Set(protocol.HeaderLogSeq, "1")
	chunk.Data = []byte("the real output\n")
	if _, err := wjs.PublishMsg(t.Context(), chunk); err != nil {
		t.Fatal(err)
	}
	real, _ := json.Marshal(model.RunRecord{RunID: "real", Status: model.StatusFailed})
	wres, err := wjs.KeyValue(t.Context(), protocol.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wres.Put(t.Context(), victim, real); err != nil {
		t.Fatalf("the worker stores the record: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	events := 0
	for {
		u, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("the victim's watch: %v", err)
		}
		if u.Event != nil {
			events++
			if u.Event.RunID != "real" {
				t.Errorf("the victim's watch delivered a foreign event: %s", u.Event.Data)
			}
			continue
		}
		if u.Record.RunID != "real" || u.Record.Status != model.StatusFailed {
			t.Errorf("the victim's watch ended with %+v, want the real failed record", u.Record)
		}
		break
	}
	if events != 1 {
		t.Errorf("%d events, want the real one", events)
	}
	// The follower: the real chunk arrives (it was published last), and
	// nothing else did.
	for {
		mu.Lock()
		got := slices.Clone(chunks)
		mu.Unlock()
		if slices.ContainsFunc(got, func(c protocol.LogChunk) bool { return c.RunID == "real" }) {
			stop()
			mu.Lock()
			defer mu.Unlock()
			if len(chunks) != 1 || string(chunks[0].Data) != "the real output\n" {
				for _, c := range chunks {
					t.Errorf("the follower passed on run %s chunk %d: %q", c.RunID, c.Seq, c.Data)
				}
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the real chunk never reached the follower; it got %d chunks", len(got))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestFollowLogsReplaysThenFollowsInOrder: a reader joins a job mid-run:
// FollowLogs (no consumer: direct gets and a subscription) passes on what
// the stream held (more than one batch, with a chunk the cap dropped) and
// then what the worker publishes meanwhile and after, each chunk once, in
// order per job and run, and nothing of another job.
func TestFollowLogsReplaysThenFollowsInOrder(t *testing.T) {
	s := startUsersServer(t)
	wnc, _ := s.connect(t, protocol.RoleWorker)
	wjs, _ := jetstream.New(wnc)
	id, other := uuid.NewString(), uuid.NewString()
	type key struct{ run, job string }
	published := map[key][]uint64{}
	seqs := map[string]uint64{}
	dropped := uint64(0)
	publish := func(jobID, run, job string, skip bool) {
		k := key{run, job}
		seqs[jobID+" "+run+" "+job]++
		seq := seqs[jobID+" "+run+" "+job]
		if skip { // the cap dropped it
			dropped = seq
			return
		}
		m := nats.NewMsg(protocol.LogSubject(jobID, run, job))
		m.Header.Set(protocol.HeaderLogSeq, strconv.FormatUint(seq, 10))
		m.Data = []byte(fmt.Sprintf("%s %s %d\n", run, job, seq))
		if _, err := wjs.PublishMsg(t.Context(), m); err != nil {
			t.Error(err)
			return
		}
		if jobID == id {
			published[k] = append(published[k], seq)
		}
	}
	step := func(i int) {
		publish(id, "r1", "a", i == 40)
		if i%3 == 0 {
			publish(id, "r1", "b", false)
		}
		if i%5 == 0 {
			publish(other, "r1", "a", false)
		}
	}
	const before, during, after = 400, 300, 50
	for i := range before {
		step(i)
	}
	rnc, _ := s.connect(t, protocol.RoleReader)
	rc, err := protocol.NewClient(rnc)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[key][]uint64{}
	total := 0
	bad := []string{}
	// The worker goes on while the reader joins and replays.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := before; i < before+during; i++ {
			step(i)
		}
	}()
	stop, err := rc.FollowLogs(t.Context(), id, true, func(c protocol.LogChunk) {
		mu.Lock()
		defer mu.Unlock()
		k := key{c.RunID, c.Job}
		got[k] = append(got[k], c.Seq)
		total++
		if want := fmt.Sprintf("%s %s %d\n", c.RunID, c.Job, c.Seq); string(c.Data) != want {
			bad = append(bad, fmt.Sprintf("%q, want %q", c.Data, want))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	<-done
	for i := before + during; i < before+during+after; i++ {
		step(i)
	}
	want := 0
	for _, s := range published {
		want += len(s)
	}
	// Until every published chunk arrived (or more than that: an error).
	bound := time.After(60 * time.Second)
	for {
		mu.Lock()
		n := total
		mu.Unlock()
		if n >= want {
			break
		}
		select {
		case <-bound:
			t.Fatalf("%d of %d chunks arrived", n, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bad {
		t.Errorf("chunk data %s", b)
	}
	if total != want {
		t.Errorf("%d chunks passed on, want %d", total, want)
	}
	for k, w := range published {
		if !slices.Equal(got[k], w) {
			t.Errorf("run %s job %s: chunks %v…, want %v… (%d and %d)", k.run, k.job, head(got[k]), head(w), len(got[k]), len(w))
		}
	}
	if dropped == 0 || slices.Contains(got[key{"r1", "a"}], dropped) {
		t.Errorf("the dropped chunk %d was passed on", dropped)
	}
	for k := range got {
		if _, ok := published[k]; !ok {
			t.Errorf("chunks of run %s job %s, which the job never had", k.run, k.job)
		}
	}
}

func head(s []uint64) []uint64 { return s[:min(len(s), 12)] }

// TestGiveUpAndOversizedRecordAsTheWorker: the daemon's give-up path with
// the worker's permissions: a job whose only delivery is never settled
// ends with the server's max-deliveries advisory; the worker reads the
// message, deletes it, stores a failed final record and publishes a dead
// letter. A second such job's record is larger than the record limit: it
// is stored whole in jerichoci-records and trimmed in the results. The
// client reads both results with its direct gets.
func TestGiveUpAndOversizedRecordAsTheWorker(t *testing.T) {
	qcfg := daemon.DefaultQueueConfig()
	qcfg.MaxDeliver, qcfg.AckWait = 1, time.Second
	s := startUsersServerWith(t, qcfg)
	cfg := daemon.DefaultDaemonConfig()
	cfg.ID, cfg.AckWait, cfg.MaxDeliver = "worker-test", qcfg.AckWait, qcfg.MaxDeliver
	q := s.queue
	cat, err := targets.LoadProject("../../jerichoci.lanes.json")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon.Daemon{Config: cfg, Queue: q, Jobs: q.Jobs, Results: q.Results, Sources: q, Events: q, Records: q, DeadLetters: q,
		Catalog: cat, RecordLimit: 4 << 10, Log: zaptest.NewLogger(t), Runner: run.Runner{StateRoot: t.TempDir()}}
	gaveUp := make(chan uint64, 4)
	sub, err := q.SubscribeGiveUps(func(m *daemon.StoredMessage) { d.GiveUp(m); gaveUp <- m.Seq }, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("the worker subscribes to the give-ups: %v", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // test cleanup
	cnc, _ := s.connect(t, protocol.RoleClient)
	client, err := protocol.NewClient(cnc)
	if err != nil {
		t.Fatal(err)
	}
	small, big := uuid.New(), uuid.New()
	files := make([]string, 800)
	for i := range files {
		files[i] = fmt.Sprintf("src/module-%03d/file-%06d.rs", i/100, i)
	}
	for _, job := range []struct {
		id    uuid.UUID
		files []string
	}{{small, []string{}}, {big, files}} {
		spec := model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: job.id, Target: "demo-pass",
			Source: model.SourceRef{Kind: model.SourceHostPath, Path: "/srv/src"}, ChangedFiles: job.files}
		if _, err := client.Enqueue(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
		// Its one delivery, taken and never settled: the worker died.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		if _, err := q.Next(ctx); err != nil {
			t.Fatalf("the worker pulls the job: %v", err)
		}
		cancel()
	}
	for range 2 {
		select {
		case <-gaveUp:
		case <-time.After(60 * time.Second):
			t.Fatal("no give-up within 60s")
		}
	}
	admin, _ := jetstream.New(s.admin)
	for _, tc := range []struct {
		id      uuid.UUID
		trimmed bool
	}{{small, false}, {big, true}} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		rec, err := client.Result(ctx, tc.id.String())
		cancel()
		if err != nil || rec == nil {
			t.Fatalf("job %s: result %v, %v", tc.id, rec, err)
		}
		if rec.Status != model.StatusFailed || !strings.HasPrefix(model.Value(rec.Message), "gave up: the job was delivered 1 times") {
			t.Errorf("job %s: result %s %q, want the failed give-up record", tc.id, rec.Status, model.Value(rec.Message))
		}
		results, _ := admin.KeyValue(t.Context(), protocol.BucketResults)
		e, err := results.Get(t.Context(), tc.id.String())
		if err != nil {
			t.Fatal(err)
		}
		var ptr struct {
			Record *protocol.RecordMarker `json:"jerichoci_record"`
		}
		_ = json.Unmarshal(e.Value(), &ptr)
		if !tc.trimmed {
			if ptr.Record != nil {
				t.Errorf("job %s: a small record was trimmed: %+v", tc.id, ptr.Record)
			}
			continue
		}
		if ptr.Record == nil || !ptr.Record.Trimmed || ptr.Record.Bucket != protocol.BucketRecords || ptr.Record.Object != protocol.RecordObjectName(tc.id.String()) {
			t.Fatalf("job %s: the results hold %d bytes with marker %+v; want a trimmed record pointing at %s", tc.id, len(e.Value()), ptr.Record, protocol.BucketRecords)
		}
		obs, err := admin.ObjectStore(t.Context(), protocol.BucketRecords)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := obs.GetBytes(t.Context(), ptr.Record.Object)
		if err != nil {
			t.Fatalf("the whole record in %s: %v", protocol.BucketRecords, err)
		}
		var full model.RunRecord
		if err := json.Unmarshal(whole, &full); err != nil || len(full.ChangedFiles) != len(files) || full.RunID != rec.RunID || len(whole) != ptr.Record.Bytes {
			t.Errorf("the whole record: %d bytes (%v), %d changed files, run %s; want %d bytes, %d files, run %s",
				len(whole), err, len(full.ChangedFiles), full.RunID, ptr.Record.Bytes, len(files), rec.RunID)
		}
	}
	// Two dead letters, and the work stream is empty.
	for _, tc := range []struct {
		stream string
		want   uint64
	}{{protocol.StreamDead, 2}, {protocol.StreamJobs, 0}} {
		st, err := admin.Stream(t.Context(), tc.stream)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := st.Info(t.Context()); err != nil || info.State.Msgs != tc.want {
			t.Errorf("stream %s holds %d messages (%v), want %d", tc.stream, info.State.Msgs, err, tc.want)
		}
	}
	for _, id := range []uuid.UUID{small, big} {
		raw, err := admin.Stream(t.Context(), protocol.StreamDead)
		if err != nil {
			t.Fatal(err)
		}
		m, err := raw.GetLastMsgForSubject(t.Context(), protocol.DeadSubject(id.String()))
		if err != nil {
			t.Errorf("the dead letter of %s: %v", id, err)
			continue
		}
		var dl protocol.DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil || dl.JobID != id.String() || dl.Deliveries != 1 || dl.MaxDeliver != 1 {
			t.Errorf("the dead letter of %s: %s (%v)", id, m.Data, err)
		}
	}
}
