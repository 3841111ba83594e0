package daemon_test

// A minority and a majority of the multi-host test bed's NATS cluster cut
// off in turn (docs/RELIABILITY.md, "Hosts in network namespaces"): no job
// is lost or runs twice; with the majority gone an enqueue fails clearly
// instead of hanging, and works again once the links are back. Recovery
// times are logged, never asserted.

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// quorumLost is what a clear refusal of an enqueue without a JetStream
// quorum says (cmd/jerichoci's wording).
var quorumLost = regexp.MustCompile(`(?i)quorum|no (stream |meta )?leader|JetStream .*(unavailable|not answer)`)

func TestHostsMinorityAndMajorityCutOff(t *testing.T) {
	b := startTestBed(t, 1)
	dir := sourceDir(t)
	var ids []string // every job queued, all phases

	t.Run("minority", func(t *testing.T) {
		// The host of the work stream's leader: the cut costs an election.
		victim := b.hostOf(b.cluster.byName(b.streamLeader(t)))
		if victim == nil {
			t.Fatal("the work stream's leader is none of the bed's nodes")
		}
		b.net.Cut(t, victim.ns)
		cut := time.Now()
		t.Logf("cut %s: node %s (the work stream's leader) and daemon %s", victim.ns.NS, victim.node.name, victim.d.name)
		var during []string
		for i := range 4 {
			id := uuid.NewString()
			took := b.enqueueUntilQueued(t, dir, id, 4*time.Minute)
			t.Logf("job %d of the cut (%s) queued in %.1fs", i+1, id, took.Seconds())
			during = append(during, id)
		}
		res := b.awaitResults(t, during, 6*time.Minute)
		ran := time.Since(cut)
		runs := diskRuns(t, b.daemons()...)
		for _, id := range during {
			checkPassed(t, id, res[id])
			checkOneFinal(t, id, res[id], runs[id])
			// Run once: one attempt, one run directory. A claim is taken
			// over only after a silence its taker watched, and a bucket
			// that fails while the cluster elects is waited out, so the
			// elections of a minority cut cost no attempt
			// (docs/RELIABILITY.md, "Claims across an outage").
			if len(runs[id]) != 1 {
				t.Errorf("job %s ran %d times, want once:%s", id, len(runs[id]), attempts(runs[id]))
			}
			for _, r := range runs[id] {
				if r.daemon == victim.d.name {
					t.Errorf("job %s ran on the cut daemon %s", id, victim.d.name)
				}
			}
		}

		b.net.Heal(t, victim.ns)
		healed := time.Now()
		itest.WaitFor(t, "node "+victim.node.name+" to be current again (/healthz)", 5*time.Minute, func() bool { return nodeCurrent(victim.node) })
		caughtUp := time.Since(healed)
		b.waitBeatSince(t, victim.d, healed, 5*time.Minute)
		back := time.Since(healed)
		checkNoInstances(t, b.cl, during...)
		ids = append(ids, during...)
		itest.Report(t, "recovery: 4 jobs queued and run on the 2 other hosts %.1fs after the cut; after the heal node %s was current in %.1fs, daemon %s said it lives in %.1fs",
			ran.Seconds(), victim.node.name, caughtUp.Seconds(), victim.d.name, back.Seconds())
	})
	if t.Failed() {
		return
	}

	t.Run("majority", func(t *testing.T) {
		// The client keeps one node; the two others are cut.
		kept := b.hosts[0]
		cutOff := b.hosts[1:]
		var before []string
		for range 3 {
			id := uuid.NewString()
			b.enqueueUntilQueued(t, dir, id, 4*time.Minute)
			before = append(before, id)
		}
		for _, bh := range cutOff {
			b.net.Cut(t, bh.ns)
		}
		cut := time.Now()
		t.Logf("cut %s and %s: only node %s (and daemon %s) left with the client; %d jobs queued just before", cutOff[0].ns.NS, cutOff[1].ns.NS,
			kept.node.name, kept.d.name, len(before))

		refused := uuid.NewString()
		code, out, took, ended := b.enqueueBounded(t, dir, refused, 4*time.Minute)
		if !ended {
			t.Fatalf("enqueue without a quorum still hung after %.0fs:\n%s", took.Seconds(), out)
		}
		t.Logf("enqueue without a quorum: exit %d after %.1fs:\n%s", code, took.Seconds(), strings.TrimSpace(out))
		if code == 0 || !quorumLost.MatchString(out) {
			t.Errorf("enqueue without a quorum: exit %d, want non-zero with a message matching %s", code, quorumLost)
		}

		for _, bh := range cutOff {
			b.net.Heal(t, bh.ns)
		}
		healed := time.Now()
		after := uuid.NewString()
		b.enqueueUntilQueued(t, dir, after, 6*time.Minute)
		recovered := time.Since(healed)
		t.Logf("after the heal, the first enqueue succeeded %.1fs after the heal (%.1fs after the cut)", recovered.Seconds(), time.Since(cut).Seconds())

		// The refused job is looked for too: queued anyway, it must still
		// end once (a refusal that queued it is allowed, a double run not).
		jobs := append(append([]string{}, before...), after)
		res := b.awaitResults(t, jobs, 8*time.Minute)
		finished := time.Since(healed)
		for _, bh := range b.hosts {
			itest.WaitFor(t, "node "+bh.node.name+" to be current again (/healthz)", 5*time.Minute, func() bool { return nodeCurrent(bh.node) })
		}
		itest.WaitFor(t, "every attempt to settle", 4*time.Minute, func() bool {
			for _, id := range jobs {
				for _, r := range diskRuns(t, b.daemons()...)[id] {
					if r.rec.Status == model.StatusRunning {
						return false
					}
				}
			}
			return true
		})
		runs := diskRuns(t, b.daemons()...)
		for _, id := range jobs {
			checkPassed(t, id, res[id])
			checkOneFinal(t, id, res[id], runs[id])
			t.Logf("job %s: final run %s on %s; %d attempt(s):%s", id, res[id].RunID, finalDaemon(runs[id], res[id]), len(runs[id]), attempts(runs[id]))
			// Run once: a job running on a host that is cut off loses its
			// guest (that host's incusd is reached through the cut link) and
			// runs again; but only one attempt may run the command to its
			// end (a run that ended while no node had a quorum waits for the
			// cluster to store its result, up to 5 minutes).
			completed := 0
			for _, r := range runs[id] {
				if r.commandCompleted(t) {
					completed++
				}
			}
			if completed != 1 {
				t.Errorf("job %s: %d attempts ran its command to the end, want 1:%s", id, completed, attempts(runs[id]))
			}
		}
		got := map[string]model.RunRecord{}
		b.o.pollResults(t, []string{refused}, got)
		if len(got) != 0 || len(runs[refused]) != 0 {
			r := b.awaitResults(t, []string{refused}, 4*time.Minute)[refused]
			t.Logf("the refused job %s was queued after all: %s", refused, r.Status)
			checkOneFinal(t, refused, r, diskRuns(t, b.daemons()...)[refused])
		}
		checkNoInstances(t, b.cl, append(jobs, refused)...)
		ids = append(ids, jobs...)
		itest.Report(t, "recovery: without a quorum enqueue failed in %.1fs; after the heal the first enqueue succeeded in %.1fs, all %d jobs had their final record in %.1fs",
			took.Seconds(), recovered.Seconds(), len(jobs), finished.Seconds())
	})
	if !t.Failed() {
		b.o.streamEmpty(t)
		t.Logf("%d jobs across both cuts, each with one final record", len(ids))
	}
}

// awaitResults waits for a final record of every key; a read that fails
// while the cluster recovers (the orchestrator's node cut, say) is
// tried again.
func (b *testBed) awaitResults(t *testing.T, keys []string, bound time.Duration) map[string]model.RunRecord {
	t.Helper()
	got := map[string]model.RunRecord{}
	itest.WaitFor(t, fmt.Sprintf("final records of %d jobs", len(keys)), bound, func() bool {
		b.o.pollResults(t, keys, got)
		return len(got) == len(keys)
	})
	return got
}

// streamLeader is the server name of the work stream's leader.
func (b *testBed) streamLeader(t *testing.T) string {
	t.Helper()
	return clusterRetry(t, "the work stream's leader", time.Minute, func(ctx context.Context) (string, error) {
		s, err := b.o.js.Stream(ctx, protocol.StreamJobs)
		if err != nil {
			return "", err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return "", err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return "", fmt.Errorf("%s has no leader yet", protocol.StreamJobs)
		}
		return info.Cluster.Leader, nil
	})
}

// enqueueBounded runs `enqueue demo-pass --job-id id` on the client, given
// every node's URL, and waits for it at most bound; a command still
// running then is killed and reported as not ended.
func (b *testBed) enqueueBounded(t *testing.T, dir, id string, bound time.Duration) (code int, out string, took time.Duration, ended bool) {
	t.Helper()
	cmd := b.clientCmd("enqueue", "demo-pass", "--source", dir, "--catalog", b.catalog, "--job-id", id)
	var buf itest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case err := <-exited:
		return exitOf(t, err), buf.String(), time.Since(start), true
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-exited
		return -1, buf.String(), time.Since(start), false
	}
}

// enqueueUntilQueued enqueues job id from the client until an enqueue
// succeeds (the same id again is queued once: the stream deduplicates it),
// within bound; it returns how long that took.
func (b *testBed) enqueueUntilQueued(t *testing.T, dir, id string, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tries := 0
	var last string
	itest.WaitFor(t, "enqueue of job "+id+" to succeed", bound, func() bool {
		tries++
		code, out, _, ended := b.enqueueBounded(t, dir, id, 3*time.Minute)
		last = fmt.Sprintf("try %d: exit %d (ended %v): %s", tries, code, ended, strings.TrimSpace(out))
		if code == 0 {
			return true
		}
		t.Logf("enqueue of job %s, %s", id, last)
		time.Sleep(time.Second)
		return false
	})
	return time.Since(start)
}

// waitBeatSince waits until daemon d's presence in the fleet's bucket was
// written after since: the daemon is back on the fleet. Its key holds its
// pid ("alive.HOST/BOOT/PID/START").
func (b *testBed) waitBeatSince(t *testing.T, d *daemon, since time.Time, bound time.Duration) {
	t.Helper()
	kv := clusterRetry(t, "the fleet's bucket", time.Minute, func(ctx context.Context) (jetstream.KeyValue, error) {
		return b.o.js.KeyValue(ctx, protocol.BucketFleet)
	})
	pid := "/" + strconv.Itoa(d.cmd.Process.Pid) + "/"
	itest.WaitFor(t, "daemon "+d.name+" to say it lives after the heal", bound, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		keys, err := kv.Keys(ctx)
		if err != nil {
			return false
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "alive.") || !strings.Contains(k, pid) {
				continue
			}
			e, err := kv.Get(ctx, k)
			return err == nil && e.Created().After(since)
		}
		return false
	})
}

// nodeCurrent reports whether node n's /healthz says its JetStream assets
// are current (caught up with their leaders).
func nodeCurrent(n *clusterNode) bool {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://%s:%d/healthz", n.addr(), n.httpPort))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// attempts lists runs: daemon, delivery, status and message.
func attempts(runs []diskRun) string {
	var b strings.Builder
	for _, r := range runs {
		fmt.Fprintf(&b, "\n\t%s delivery %d: %s %q", r.daemon, r.job.Delivery, r.rec.Status, model.Value(r.rec.Message))
	}
	return b.String()
}

// finalDaemon names the daemon whose run is the result.
func finalDaemon(runs []diskRun, res model.RunRecord) string {
	for _, r := range runs {
		if r.rec.RunID == res.RunID {
			return r.daemon
		}
	}
	return "no daemon"
}
