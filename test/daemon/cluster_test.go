package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// clusterNode is one nats-server process of a test cluster on loopback.
type clusterNode struct {
	name                  string // its server name, node1…
	host                  string // its address; "" is 127.0.0.1
	port, cport, httpPort int    // client, cluster (routes) and monitoring ports
	cmd                   *exec.Cmd
	log                   *itest.SyncBuffer
	done                  chan struct{}
}

func (n *clusterNode) url() string { return fmt.Sprintf("nats://%s:%d", n.addr(), n.port) }

func (n *clusterNode) addr() string {
	if n.host == "" {
		return "127.0.0.1"
	}
	return n.host
}

func (n *clusterNode) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// natsCluster is a JetStream cluster of nats-server processes.
type natsCluster struct{ nodes []*clusterNode }

// urls is the comma-separated client URL list of every node, as a daemon
// or an orchestrator of a clustered deployment is given.
func (c *natsCluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.url())
	}
	return strings.Join(u, ",")
}

// logs is the tail of every node's log.
func (c *natsCluster) logs() string {
	var b strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "--- %s (%s, exited %v) ---\n%s\n", n.name, n.url(), n.exited(), itest.Tail(n.log.String(), 40))
	}
	return b.String()
}

// byPort is the node listening for clients on port.
func (c *natsCluster) byPort(port int) *clusterNode {
	for _, n := range c.nodes {
		if n.port == port {
			return n
		}
	}
	return nil
}

func (c *natsCluster) byName(name string) *clusterNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// clusterStoreDir is where a test cluster's nodes keep their JetStream
// stores: in memory (/dev/shm) where there is one. Three nodes that fsync
// every stream write share the disk with incusd and the other suites of
// make check; on it, a fresh cluster took more than 12 minutes to place
// the daemons' streams (the fresh run of 2026-12-07), which tests the
// disk, not the fleet. A killed node's files stay, as on a disk.
func clusterStoreDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "jci-nats-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// distinctPorts returns n free loopback ports, no two the same.
func distinctPorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p := itest.FreePort(t)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// startNATSCluster runs size nats-server processes with JetStream, each
// with its own store, routed to each other as cluster "jci", and waits
// until the cluster has a JetStream meta leader and places a stream of
// size replicas. A cluster that does not form within the bound fails the
// test with every server's log.
func startNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	c := launchNATSCluster(t, size)
	c.waitFormed(t, size)
	return c
}

// launchNATSCluster starts the servers of startNATSCluster without
// waiting for the cluster to form.
func launchNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	ports := distinctPorts(t, 3*size)
	c := &natsCluster{}
	var routes []string
	for i := range size {
		n := &clusterNode{name: fmt.Sprintf("node%d", i+1), port: ports[3*i], cport: ports[3*i+1], httpPort: ports[3*i+2],
			log: &itest.SyncBuffer{}, done: make(chan struct{})}
		c.nodes = append(c.nodes, n)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", n.cport))
	}
	storeBase := clusterStoreDir(t)
	for _, n := range c.nodes {
		dir := filepath.Join(storeBase, n.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n.cmd = exec.Command(natsBin, "-js", "-sd", dir, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port),
			"-m", strconv.Itoa(n.httpPort), "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.cport),
			"--cluster_name", "jci", "--routes", strings.Join(routes, ","), "-n", n.name)
		n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = n.cmd.Wait(); close(n.done) }()
		t.Cleanup(func() {
			_ = n.cmd.Process.Kill()
			<-n.done
		})
	}
	return c
}

// waitFormed waits until the cluster has a JetStream meta leader and
// places a stream of size replicas.
func (c *natsCluster) waitFormed(t *testing.T, size int) {
	t.Helper()
	formed := false // a cluster that did not form has its logs in the failure
	t.Cleanup(func() {
		if t.Failed() && formed {
			t.Logf("NATS cluster logs:\n%s", c.logs())
		}
	})
	const bound = 90 * time.Second
	deadline := time.Now().Add(bound)
	var last error
	for {
		for _, n := range c.nodes {
			if n.exited() {
				t.Fatalf("nats-server %s exited while the cluster formed (%v):\n%s", n.name, n.cmd.ProcessState, c.logs())
			}
		}
		if last = c.ready(t, size); last == nil {
			formed = true
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NATS cluster did not form within %s: %v\n%s", bound, last, c.logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ready reports why the cluster cannot take the daemon's streams yet: a
// node without a JetStream meta leader, or a probe stream of size
// replicas that cannot be placed (a peer not yet known to the leader).
func (c *natsCluster) ready(t *testing.T, size int) error {
	for _, n := range c.nodes {
		nc, err := nats.Connect(n.url(), nats.Timeout(2*time.Second), nats.NoReconnect())
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		js, err := jetstream.New(nc)
		if err == nil {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
		}
		nc.Close()
		if err != nil {
			return fmt.Errorf("%s: JetStream account info: %w", n.name, err)
		}
	}
	nc, err := nats.Connect(c.urls(), nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	const probe = "JCI_CLUSTER_PROBE"
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: probe, Subjects: []string{"jci-cluster-probe"},
		Storage: jetstream.MemoryStorage, Replicas: size}); err != nil {
		return fmt.Errorf("a stream of %d replicas: %w", size, err)
	}
	if err := js.DeleteStream(ctx, probe); err != nil {
		return fmt.Errorf("delete the probe stream: %w", err)
	}
	return nil
}

// metaLeader is the JetStream meta leader as node n's monitoring port
// reports it ("" if n does not know one or does not answer).
func (n *clusterNode) metaLeader() string {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://%s:%d/jsz", n.addr(), n.httpPort))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if json.NewDecoder(resp.Body).Decode(&jsz) != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// replicatedStreams are the JetStream streams behind everything the
// daemon creates: the work, events and dead-letter streams, the buckets
// and the object stores.
var replicatedStreams = []string{
	protocol.StreamJobs, protocol.StreamEvents, protocol.StreamDead,
	"KV_" + protocol.BucketJobs, "KV_" + protocol.BucketResults, "KV_" + protocol.BucketFleet,
	"OBJ_" + protocol.BucketSources, "OBJ_" + protocol.BucketRecords,
}

// clusterRetry calls f until it succeeds or the bound passes: a client of
// a cluster losing a node sees errors (a reconnect, a leader election) for
// a few seconds; they are not the test's failure.
func clusterRetry[T any](t *testing.T, what string, bound time.Duration, f func(ctx context.Context) (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		v, err := f(ctx)
		cancel()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s on %s: %v", bound, what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// pollResults reads, once, the final record of every key not yet in got;
// a read that fails while the cluster recovers is skipped.
func (o *orchestrator) pollResults(t *testing.T, keys []string, got map[string]model.RunRecord) {
	t.Helper()
	for _, k := range keys {
		if _, ok := got[k]; ok {
			continue
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		e, err := o.results.Get(ctx, k)
		cancel()
		if err != nil {
			continue // absent, or the cluster is recovering
		}
		var r model.RunRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			t.Fatalf("%s %s: %v", o.results.Bucket(), k, err)
		}
		got[k] = r
	}
}

// clusterNonFinal start the messages of attempts that are not a job's
// result: nonFinalPrefixes, and an attempt whose result could not be stored
// (a NATS outage) and that went back to the queue.
var clusterNonFinal = append([]string{"could not store the result"}, nonFinalPrefixes...)

var connectedPort = regexp.MustCompile(`workers on nats://127\.0\.0\.1:(\d+)`)

// connectedNode is the node the daemon connected to at start, as its
// start line says (nil if none of the cluster's).
func (c *natsCluster) connectedNode(t *testing.T, d *daemon) *clusterNode {
	t.Helper()
	m := connectedPort.FindStringSubmatch(d.log.String())
	if m == nil {
		t.Fatalf("daemon %s does not say which server it is connected to:\n%s", d.name, itest.Tail(d.log.String(), 20))
	}
	port, _ := strconv.Atoi(m[1])
	return c.byPort(port)
}

// killedNodeChoice picks the node to kill: JERICHOCI_CLUSTER_KILL names
// one (node1…), or "stream-leader" (the work stream's leader), or
// "meta-leader"; unset, the node daemon-a is connected to, which may or
// may not lead anything.
func killedNodeChoice(t *testing.T, c *natsCluster, a *daemon, o *orchestrator) (*clusterNode, string) {
	t.Helper()
	switch choice := os.Getenv("JERICHOCI_CLUSTER_KILL"); choice {
	case "":
		if n := c.connectedNode(t, a); n != nil {
			return n, "the node daemon-a is connected to"
		}
		t.Fatalf("daemon-a is connected to no node of the cluster:\n%s", itest.Tail(a.log.String(), 20))
	case "stream-leader":
		info := clusterRetry(t, "the work stream's info", 30*time.Second, func(ctx context.Context) (*jetstream.StreamInfo, error) {
			s, err := o.js.Stream(ctx, protocol.StreamJobs)
			if err != nil {
				return nil, err
			}
			return s.Info(ctx)
		})
		if info.Cluster == nil || c.byName(info.Cluster.Leader) == nil {
			t.Fatalf("the work stream has no leader among the nodes: %+v", info.Cluster)
		}
		return c.byName(info.Cluster.Leader), "the work stream's leader (JERICHOCI_CLUSTER_KILL=stream-leader)"
	case "meta-leader":
		if n := c.byName(c.nodes[0].metaLeader()); n != nil {
			return n, "the JetStream meta leader (JERICHOCI_CLUSTER_KILL=meta-leader)"
		}
		t.Fatal("no JetStream meta leader reported on node1's monitoring port")
	default:
		if n := c.byName(choice); n != nil {
			return n, "JERICHOCI_CLUSTER_KILL=" + choice
		}
		t.Fatalf("JERICHOCI_CLUSTER_KILL=%q: expected node1…node%d, stream-leader or meta-leader", choice, len(c.nodes))
	}
	return nil, ""
}

// roles lists what node leads: the meta group, and of the streams and the
// work consumer.
func roles(t *testing.T, c *natsCluster, n *clusterNode, o *orchestrator) []string {
	t.Helper()
	var out []string
	for _, m := range c.nodes {
		if m != n && !m.exited() {
			if m.metaLeader() == n.name {
				out = append(out, "meta leader")
			}
			break
		}
	}
	for _, name := range replicatedStreams {
		info := clusterRetry(t, "stream "+name+" info", 30*time.Second, func(ctx context.Context) (*jetstream.StreamInfo, error) {
			s, err := o.js.Stream(ctx, name)
			if err != nil {
				return nil, err
			}
			return s.Info(ctx)
		})
		if info.Cluster != nil && info.Cluster.Leader == n.name {
			out = append(out, name+" leader")
		}
	}
	ci := clusterRetry(t, "the work consumer's info", 30*time.Second, func(ctx context.Context) (*jetstream.ConsumerInfo, error) {
		cons, err := o.js.Consumer(ctx, protocol.StreamJobs, protocol.ConsumerWorkers)
		if err != nil {
			return nil, err
		}
		return cons.Info(ctx)
	})
	if ci.Cluster != nil && ci.Cluster.Leader == n.name {
		out = append(out, protocol.ConsumerWorkers+" leader")
	}
	if len(out) == 0 {
		out = append(out, "no leader role")
	}
	return out
}

// TestClusterThreeNodesKill9OneNode runs two `serve --replicas 3` daemons
// on a three-node NATS cluster, each daemon and the orchestrator given the
// URLs of all three; kills one node (SIGKILL) while jobs run and keeps it
// down. Every job still gets exactly one final record, passed; the work
// stream empties, no instance is left, and every stream and bucket has 3
// replicas. Reported: which node died and what it led, the time, the
// attempts retried.
//
// The node killed is the one daemon-a is connected to, whatever it leads;
// JERICHOCI_CLUSTER_KILL=stream-leader (the work stream's leader),
// meta-leader or node1…node3 picks another.
func TestClusterThreeNodesKill9OneNode(t *testing.T) {
	cl := require(t)
	c := startNATSCluster(t, 3)
	urls := c.urls()
	cat := writeCatalog(t)
	// The recovery settings are the defaults (ack wait 10s, 4 deliveries,
	// retries 10s, 20s, 40s after an infrastructure error), not the
	// harness's short ones: losing a node that leads a stream or bucket
	// makes the daemons' requests to it fail until a new leader is elected
	// (about 5s here), and retries 0.5s and 1s apart spend the 3 deliveries
	// before that, failing the job for good.
	recovery := []string{"--replicas", "3", "--ack-wait", "10s", "--max-deliver", "4", "--retry-delay", "10s"}
	a := startDaemon(t, urls, "daemon-a", cat, 2, recovery...)
	b := startDaemon(t, urls, "daemon-b", cat, 2, recovery...)
	o := newOrchestrator(t, urls, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))

	// The sources go through the replicated object store, as across hosts.
	src := o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("# cluster test\n"))))
	var keys []string
	slow := map[string]bool{}
	start := time.Now()
	for i := range 12 {
		id, target := uuid.NewString(), "demo-pass"
		if i%4 == 1 {
			target = "demo-slow"
			slow[id] = true
		}
		keys = append(keys, id)
		o.publish(t, protocol.JobSubject(target), specWith(t, id, target, src, nil), id)
	}

	// Mid-run: some jobs done, at least one instance running.
	results := map[string]model.RunRecord{}
	itest.WaitFor(t, "two final records and a running instance", 5*time.Minute, func() bool {
		o.pollResults(t, keys, results)
		if len(results) == len(keys) {
			t.Fatalf("all %d jobs finished before a running instance was seen", len(keys))
		}
		if len(results) < 2 {
			return false
		}
		for _, in := range instancesOf(t, cl, keys...) {
			if in.Status == "Running" {
				return true
			}
		}
		return false
	})
	victim, why := killedNodeChoice(t, c, a, o)
	led := roles(t, c, victim, o)
	// Who loses its server: those must fail over to another node.
	var clients []string
	var failover []*daemon
	for _, d := range []*daemon{a, b} {
		if c.connectedNode(t, d) == victim {
			clients, failover = append(clients, d.name), append(failover, d)
		}
	}
	orchestratorOnVictim := o.nc.ConnectedUrl() == victim.url()
	if orchestratorOnVictim {
		clients = append(clients, "the orchestrator")
	}
	if len(clients) == 0 {
		clients = append(clients, "no client")
	}
	doneAtKill := len(results)
	if err := victim.cmd.Process.Kill(); err != nil { // SIGKILL, and it stays down
		t.Fatal(err)
	}
	killedAt := time.Since(start)
	<-victim.done
	t.Logf("kill -9 of %s (%s; %s; connected: %s) %.1fs after the first publish, %d of %d jobs done",
		victim.name, why, strings.Join(led, ", "), strings.Join(clients, ", "), killedAt.Seconds(), doneAtKill, len(keys))

	itest.WaitFor(t, fmt.Sprintf("final records of %d jobs", len(keys)), 8*time.Minute, func() bool {
		o.pollResults(t, keys, results)
		return len(results) == len(keys)
	})
	elapsed := time.Since(start)
	o.streamEmpty(t)
	for _, d := range []*daemon{a, b} {
		select {
		case <-d.done:
			t.Errorf("daemon %s exited (%v) while one NATS node was down", d.name, d.cmd.ProcessState)
		default:
		}
	}
	for _, d := range failover {
		if !strings.Contains(d.log.String(), "nats reconnected") {
			t.Errorf("daemon %s lost its server %s but never logged \"nats reconnected\"", d.name, victim.name)
		}
	}
	if orchestratorOnVictim && o.nc.Stats().Reconnects == 0 {
		t.Errorf("the orchestrator lost its server %s but did not reconnect", victim.name)
	}

	// Exactly one final record per job, passed, and no two runs of a job
	// at the same time.
	runs := diskRuns(t, a, b)
	attempts, infra := 0, 0 // runs on disk; those failed on infrastructure
	passed, duplicates := 0, 0
	kinds := map[string]int{}
	for _, k := range keys {
		res := results[k]
		checkPassed(t, k, res)
		if res.Status == model.StatusPassed {
			passed++
		}
		finals := 0
		for _, r := range runs[k] {
			attempts++
			msg := model.Value(r.rec.Message)
			if r.rec.RunID == res.RunID {
				finals++
				if r.rec.Status != res.Status || msg != model.Value(res.Message) {
					t.Errorf("job %s: run.json on %s (%s %q) differs from the result (%s %q)", k, r.daemon, r.rec.Status, msg, res.Status, model.Value(res.Message))
				}
				continue
			}
			if strings.HasPrefix(msg, "infrastructure error") {
				infra++
			}
			t.Logf("job %s: attempt %s on %s (delivery %d) is not the result: %s %.200q", k, r.rec.RunID, r.daemon, r.job.Delivery, r.rec.Status, msg)
			kind := "left running by a dead attempt"
			if r.rec.Status != model.StatusRunning {
				kind = ""
				for _, p := range clusterNonFinal {
					if strings.HasPrefix(msg, p) {
						kind = p
					}
				}
				if kind == "" {
					t.Errorf("job %s: run %s on %s looks final (%s %q) but the result is run %s", k, r.rec.RunID, r.daemon, r.rec.Status, msg, res.RunID)
					kind = "unmarked"
				}
			}
			kinds[kind]++
		}
		if finals != 1 {
			t.Errorf("job %s: %d run.json files of the final run %s, want 1", k, finals, res.RunID)
		}
		dup := finals > 1
		for i, x := range runs[k] {
			for _, y := range runs[k][i+1:] {
				if overlap(x.rec, y.rec) {
					t.Errorf("job %s: runs %s and %s ran at the same time", k, x.rec.RunID, y.rec.RunID)
					dup = true
				}
			}
		}
		if dup {
			duplicates++
		}
	}
	checkNoInstances(t, cl, keys...)

	// Every stream and bucket has 3 replicas (the consumer inherits the
	// work stream's), and each has a leader on a surviving node.
	for _, name := range replicatedStreams {
		info := clusterRetry(t, "stream "+name+" info", 30*time.Second, func(ctx context.Context) (*jetstream.StreamInfo, error) {
			s, err := o.js.Stream(ctx, name)
			if err != nil {
				return nil, err
			}
			return s.Info(ctx)
		})
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s: %d replicas, want 3", name, info.Config.Replicas)
		}
		checkPlacement(t, "stream "+name, info.Cluster, victim)
		if name == protocol.StreamDead && info.State.Msgs != 0 {
			t.Errorf("%d dead letters: a job ran out of deliveries", info.State.Msgs)
		}
	}
	ci := clusterRetry(t, "the work consumer's info", 30*time.Second, func(ctx context.Context) (*jetstream.ConsumerInfo, error) {
		cons, err := o.js.Consumer(ctx, protocol.StreamJobs, protocol.ConsumerWorkers)
		if err != nil {
			return nil, err
		}
		return cons.Info(ctx)
	})
	if ci.Config.Replicas != 0 && ci.Config.Replicas != 3 {
		t.Errorf("consumer %s: %d replicas configured, want 3 (or 0: the stream's)", protocol.ConsumerWorkers, ci.Config.Replicas)
	}
	t.Logf("consumer %s: replicas %d in its configuration (0: the stream's)", protocol.ConsumerWorkers, ci.Config.Replicas)
	checkPlacement(t, "consumer "+protocol.ConsumerWorkers, ci.Cluster, victim)
	if ci.NumAckPending != 0 || ci.NumPending != 0 {
		t.Errorf("consumer %s: %d pending acks, %d pending messages, want none", protocol.ConsumerWorkers, ci.NumAckPending, ci.NumPending)
	}

	// What the daemons said went wrong while the node was down, and the
	// deliveries they settled without a final record, by outcome: an
	// attempt that failed before its run started (say, on taking the claim)
	// leaves no run on disk, and "duplicate" is a redelivery of a job
	// already recorded (the first ack was lost with the node).
	nonFinal := map[string]int{}
	reaped := 0 // instances the reapers deleted: of attempts that died, or that looked dead
	for _, d := range []*daemon{a, b} {
		var bad []string
		for _, line := range strings.Split(d.log.String(), "\n") {
			if strings.Contains(line, `"msg":"reaped orphan instance"`) {
				reaped++
			}
			if strings.Contains(line, `"msg":"job settled"`) {
				var settled struct {
					Outcome string `json:"outcome"`
					Final   bool   `json:"final"`
				}
				if json.Unmarshal([]byte(line), &settled) == nil && !settled.Final {
					nonFinal[settled.Outcome]++
				}
			}
			if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"warn"`) {
				bad = append(bad, line)
			}
		}
		if len(bad) > 0 {
			t.Logf("daemon %s: %d warnings and errors, the last ones:\n%s", d.name, len(bad), itest.Tail(strings.Join(bad, "\n"), 8))
		}
	}

	var kindList, settleList []string
	for k, n := range kinds {
		kindList = append(kindList, fmt.Sprintf("%d %q", n, k))
	}
	settles := 0
	for k, n := range nonFinal {
		settleList = append(settleList, fmt.Sprintf("%d %s", n, k))
		settles += n
	}
	sort.Strings(kindList)
	sort.Strings(settleList)
	t.Logf("%d jobs (%d demo-slow) on 2 daemons x 2 workers, %s: %d passed, lost %d, duplicates %d; "+
		"%d runs on disk, %d of them retried (%d with an infrastructure-error message; by message: [%s]); %d deliveries settled without a final record [%s]; "+
		"%d instances reaped; %.1fs from the first publish to the last final record (kill at %.1fs)",
		len(keys), len(slow), strings.Join(recovery, " "), passed, len(keys)-len(results), duplicates,
		attempts, attempts-len(keys), infra, strings.Join(kindList, ", "),
		settles, strings.Join(settleList, ", "), reaped, elapsed.Seconds(), killedAt.Seconds())
}

// checkPlacement asserts 3 peers (a leader and 2 replicas) and a leader
// that is not the killed node, and logs each replica's state.
func checkPlacement(t *testing.T, what string, ci *jetstream.ClusterInfo, killed *clusterNode) {
	t.Helper()
	if ci == nil {
		t.Errorf("%s: no cluster information", what)
		return
	}
	peers := []string{ci.Leader}
	var states []string
	for _, p := range ci.Replicas {
		peers = append(peers, p.Name)
		states = append(states, fmt.Sprintf("%s current=%v offline=%v", p.Name, p.Current, p.Offline))
	}
	if ci.Leader == "" || ci.Leader == killed.name {
		t.Errorf("%s: leader %q, want a surviving node", what, ci.Leader)
	}
	if len(peers) != 3 {
		t.Errorf("%s: peers %q, want 3", what, peers)
	}
	t.Logf("%s: leader %s, replicas [%s]", what, ci.Leader, strings.Join(states, "; "))
}
