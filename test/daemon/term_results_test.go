package daemon_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	jdaemon "jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

// createOldResultsBucket makes the results bucket as versions before
// per-key TTLs did (no limit markers, no byte cap, DiscardNew) and stores
// one record in it.
func createOldResultsBucket(t *testing.T, js jetstream.JetStream, key string) {
	t.Helper()
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{
		Bucket: protocol.BucketResults, Description: "jerichoci final run records, keyed by job id", History: 1,
		Storage: jetstream.FileStorage, Replicas: 1, MaxValueSize: protocol.MaxResultValue, TTL: 7 * 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(t.Context(), key, []byte(`{"run_id":"old","status":"passed"}`)); err != nil {
		t.Fatal(err)
	}
}

// resultsStream is the results bucket's stream.
func resultsStream(t *testing.T, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	s, err := js.Stream(t.Context(), "KV_"+protocol.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resultTTL is the Nats-TTL header of key's value in the results bucket
// ("" without one: the bucket's TTL applies).
func resultTTL(t *testing.T, js jetstream.JetStream, key string) string {
	t.Helper()
	m, err := resultsStream(t, js).GetLastMsgForSubject(t.Context(), "$KV."+protocol.BucketResults+"."+key)
	if err != nil {
		t.Fatalf("result %s: %v", key, err)
	}
	return m.Header.Get(jetstream.MsgTTLHeader)
}

// TestResultsBucketUpdatedInPlaceDiscardsOldestAtCap: a results bucket an
// older version made gets limit markers (per-key TTLs), the byte cap and
// DiscardOld in place, keeping its records; at the cap, new records are
// stored and the oldest dropped, never the other way round.
func TestResultsBucketUpdatedInPlaceDiscardsOldestAtCap(t *testing.T) {
	requireBinaries(t)
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	createOldResultsBucket(t, js, "old-record")
	cfg := jdaemon.DefaultQueueConfig()
	cfg.ResultsMaxBytes = 2 * protocol.MaxResultValue
	for range 2 { // the second start finds it updated already
		q, err := jdaemon.OpenQueue(t.Context(), nc, cfg)
		if err != nil {
			t.Fatalf("open the queue on the older bucket: %v", err)
		}
		info, err := resultsStream(t, js).Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		c := info.Config
		if !c.AllowMsgTTL || c.SubjectDeleteMarkerTTL != time.Minute || c.MaxBytes != cfg.ResultsMaxBytes || c.Discard != jetstream.DiscardOld || c.MaxAge != cfg.KeepResults {
			t.Errorf("results stream: allow msg ttl %t, marker ttl %s, max bytes %d, discard %s, max age %s; want true, 1m0s, %d, DiscardOld, %s",
				c.AllowMsgTTL, c.SubjectDeleteMarkerTTL, c.MaxBytes, c.Discard, c.MaxAge, cfg.ResultsMaxBytes, cfg.KeepResults)
		}
		if _, err := q.Results.Get(t.Context(), "old-record"); err != nil {
			t.Errorf("the older bucket's record: %v", err)
		}
	}
	// Five values of 600 KiB in a 2 MiB bucket: every create succeeds,
	// the oldest go.
	kv, err := js.KeyValue(t.Context(), protocol.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("x"), 600<<10)
	var keys []string
	for i := range 5 {
		k := fmt.Sprintf("big-%d", i)
		if _, err := kv.Create(t.Context(), k, value); err != nil {
			t.Fatalf("create %s at the cap: %v (the bucket must drop its oldest values, not refuse new ones)", k, err)
		}
		keys = append(keys, k)
	}
	for i, k := range keys {
		_, err := kv.Get(t.Context(), k)
		gone := errors.Is(err, jetstream.ErrKeyNotFound)
		if err != nil && !gone {
			t.Fatal(err)
		}
		if wantGone := i < 2; gone != wantGone {
			t.Errorf("%s (the %d. of 5): gone %t, want %t", k, i+1, gone, wantGone)
		}
	}
	if _, err := kv.Get(t.Context(), "old-record"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the oldest record is still there at the cap: %v", err)
	}
}

// TestRefusedJobsResultsExpireSooner publishes garbage and a real job to
// the real daemon (on an older results bucket, updated in place): each
// garbage record carries --keep-unrun-results as its Nats-TTL and is gone
// after it, while the real job's record has no TTL of its own (the
// bucket's 7 days) and stays.
func TestRefusedJobsResultsExpireSooner(t *testing.T) {
	require(t)
	url := startNATS(t)
	o0 := func() jetstream.JetStream {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}()
	createOldResultsBucket(t, o0, "old-record")
	startDaemon(t, url, "daemon-unrun-ttl", writeCatalog(t), 2, "--keep-unrun-results", "2s", "--results-max-bytes", "64MiB")
	o := newOrchestrator(t, url)
	var mu sync.Mutex
	stored := map[string]string{} // key: Nats-TTL of its stored value
	prefix := "$KV." + protocol.BucketResults + "."
	sub, err := o.nc.Subscribe(prefix+">", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		stored[strings.TrimPrefix(m.Subject, prefix)] = m.Header.Get(jetstream.MsgTTLHeader)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	const n = 20
	var garbage []string
	for i := range n {
		id := uuid.NewString()
		body := []byte("{not json")
		if i%2 == 1 { // parses, names no target of the catalog
			body = o.spec(id, "no-such-target")
		}
		o.publish(t, protocol.JobSubject("demo-pass"), body, id)
		garbage = append(garbage, id)
	}
	real := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-pass"), o.spec(real, "demo-pass"), real)
	res := o.waitResults(t, append(append([]string{}, garbage...), real), 3*time.Minute)
	if r := res[real]; r.Status != model.StatusPassed {
		t.Fatalf("the real job: %s %q", r.Status, model.Value(r.Message))
	}
	if ttl := resultTTL(t, o.js, real); ttl != "" {
		t.Errorf("the real job's record has its own TTL %q; want none (the bucket's)", ttl)
	}
	for _, id := range garbage {
		if r := res[id]; r.Status != model.StatusFailed || len(r.Jobs) != 0 {
			t.Errorf("garbage %s: %s with %d jobs; want failed, never run", id, r.Status, len(r.Jobs))
		}
	}
	// Each value as it was stored, headers included (seen live: no race
	// with the 2 s TTL).
	mu.Lock()
	for _, id := range garbage {
		if got, ok := stored[id]; !ok || got != "2s" {
			t.Errorf("garbage %s: stored with Nats-TTL %q (seen %t), want 2s", id, got, ok)
		}
	}
	if got, ok := stored[real]; !ok || got != "" {
		t.Errorf("the real job's record: stored with Nats-TTL %q (seen %t), want none", got, ok)
	}
	mu.Unlock()
	for _, id := range garbage {
		waitKeyGone(t, o.results, id, 2*time.Minute)
	}
	if _, err := o.results.Get(t.Context(), real); err != nil {
		t.Errorf("the real job's record after the garbage expired: %v", err)
	}
	if _, err := o.results.Get(t.Context(), "old-record"); err != nil {
		t.Errorf("the older bucket's record: %v", err)
	}
}
