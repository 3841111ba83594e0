package daemon_test

// The multi-host test bed (docs/RELIABILITY.md, "Hosts in network
// namespaces"): three hosts, each a network namespace with a nats-server
// of one cluster and a `jerichoci serve --replicas 3` that reaches incusd
// only over HTTPS, through a relay at the test network's root address; a
// client on a fourth namespace.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
)

// noSocket is where a daemon in a namespace is told incusd's unix socket
// is: nowhere, so that only HTTPS can work.
const noSocket = "/nonexistent/incus/unix.socket"

// testBed is the three hosts and the client.
type testBed struct {
	net     *itest.HostNet
	cluster *natsCluster
	hosts   []*bedHost
	client  *itest.NetHost
	incus   []string // the flags that point a command at incusd over HTTPS
	catalog string
	o       *orchestrator // on the root namespace, for the checks
	cl      *incus.Client // the unix socket's, for the checks
}

// bedHost is one host of the bed: its namespace, NATS node and daemon.
type bedHost struct {
	ns   *itest.NetHost
	node *clusterNode
	d    *daemon
}

// requireHosts skips (or fails under CI) without root and iproute2's ip.
func requireHosts(t *testing.T) *incus.Client {
	t.Helper()
	cl := require(t)
	if os.Geteuid() != 0 {
		testenv.Missing(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Missing(t, "network namespaces need iproute2's ip (scripts/incus-up installs it): %v", err)
	}
	return cl
}

// startTestBed builds the bed with workers per daemon; extra goes to
// every serve after the bed's own flags.
func startTestBed(t *testing.T, workers int, extra ...string) *testBed {
	t.Helper()
	b := &testBed{cl: requireHosts(t), catalog: writeCatalog(t)}
	h := itest.StartIncusHTTPS(t)
	name := fmt.Sprintf("jci-test-hosts-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	cert := h.TrustedClientCert(t, name, project)
	b.net = itest.NewHostNet(t, "h1", "h2", "h3", "client")
	b.client = b.net.Host(t, "client")
	relay := itest.Relay(t, b.net.Root.String()+":0", strings.TrimPrefix(h.URL, "https://"))
	b.incus = []string{"--incus-url", "https://" + relay, "--incus-client-cert", cert.Cert,
		"--incus-client-key", cert.Key, "--incus-server-cert", h.ServerCert}
	t.Logf("network %s on %s; incusd over HTTPS at https://%s (relayed to %s)", b.net.Prefix, b.net.Subnet, relay, h.URL)

	// One nats-server per host, on the host's own address; a namespace has
	// its own ports, so every node takes the standard ones.
	b.cluster = &natsCluster{}
	var routes []string
	for i := range 3 {
		ns := b.net.Host(t, "h"+strconv.Itoa(i+1))
		n := &clusterNode{name: fmt.Sprintf("node%d", i+1), host: ns.IP.String(), port: 4222, cport: 6222, httpPort: 8222,
			log: &itest.SyncBuffer{}, done: make(chan struct{})}
		b.cluster.nodes = append(b.cluster.nodes, n)
		b.hosts = append(b.hosts, &bedHost{ns: ns, node: n})
		routes = append(routes, fmt.Sprintf("nats://%s:%d", n.host, n.cport))
	}
	storeBase := clusterStoreDir(t)
	// The nodes are configured as docs/SCALING.md tells a fleet across
	// hosts to: routes pinged every 2 s, so a node whose link is cut is
	// dropped from the others' routes in seconds (the default pings take
	// minutes, and meanwhile requests are still routed into the cut link).
	conf := filepath.Join(storeBase, "node.conf")
	if err := os.WriteFile(conf, []byte(natsClusterNodeConf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bh := range b.hosts {
		n := bh.node
		n.cmd = bh.ns.Command(natsBin, "-c", conf, "-js", "-sd", filepath.Join(storeBase, n.name), "-a", n.host,
			"-p", strconv.Itoa(n.port), "-m", strconv.Itoa(n.httpPort), "--cluster", fmt.Sprintf("nats://%s:%d", n.host, n.cport),
			"--cluster_name", "jci", "--routes", strings.Join(routes, ","), "-n", n.name)
		n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = n.cmd.Wait(); close(n.done) }()
		t.Cleanup(func() { _ = n.cmd.Process.Kill(); <-n.done; itest.KeepLog(t, n.name, n.log.String()) })
	}
	b.cluster.waitFormed(t, 3)
	urls := b.cluster.urls()
	for i, bh := range b.hosts {
		args := append([]string{"--replicas", "3", "--ack-wait", "10s", "--max-deliver", "4", "--retry-delay", "10s"}, b.incus...)
		args = append(append(args, extra...), wrapWith+"ip netns exec "+bh.ns.NS+" env INCUS_SOCKET="+noSocket)
		bh.d = startDaemon(t, urls, fmt.Sprintf("host%d", i+1), b.catalog, workers, args...)
	}
	// Pings notice a node cut off within seconds (the default takes minutes).
	b.o = newOrchestrator(t, urls, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(3))
	return b
}

// natsClusterNodeConf is the nats-server configuration docs/SCALING.md
// gives for a cluster across hosts (the rest is on the command line).
const natsClusterNodeConf = `# A cut link is noticed within about 8 s (docs/SCALING.md).
ping_interval: "2s"
ping_max: 3
`

func (b *testBed) daemons() []*daemon {
	var ds []*daemon
	for _, bh := range b.hosts {
		ds = append(ds, bh.d)
	}
	return ds
}

// clientNode is the node whose monitoring port lists a connection named
// like name (nil if none does).
func (b *testBed) clientNode(name string) *clusterNode {
	cl := http.Client{Timeout: 2 * time.Second}
	for _, n := range b.cluster.nodes {
		resp, err := cl.Get(fmt.Sprintf("http://%s:%d/connz?limit=1024", n.addr(), n.httpPort))
		if err != nil {
			continue
		}
		var connz struct {
			Conns []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		err = json.NewDecoder(resp.Body).Decode(&connz)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, c := range connz.Conns {
			if strings.Contains(c.Name, name) {
				return n
			}
		}
	}
	return nil
}

// hostOf is the bed host of node n.
func (b *testBed) hostOf(n *clusterNode) *bedHost {
	for _, bh := range b.hosts {
		if bh.node == n {
			return bh
		}
	}
	return nil
}

// clientCmd is jerichoci with args on the client's namespace, given every
// node's URL.
func (b *testBed) clientCmd(args ...string) *exec.Cmd {
	cmd := b.client.Command(jciBin, args...)
	cmd.Env = append(itest.CleanEnv(), "JERICHOCI_NATS_URL="+b.cluster.urls(), "INCUS_SOCKET="+noSocket)
	return cmd
}

// sourceDir is a source tree for the client to upload.
func sourceDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# hosts test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
