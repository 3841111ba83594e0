package daemon_test

// Guest isolation (docs/SECURITY.md, issue #20): jobs' instances are on
// the fleet's own bridge, their NICs filtered and port-isolated, the host's
// firewall keeps them off the host's services, and limits.processes keeps
// a fork bomb inside its guest. Every negative probe has a positive
// control that runs the same probe where it must succeed.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run"
	rundaemon "jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

// guestNet is the network scripts/incus-up makes for jobs (the daemon's
// default --guest-network).
const guestNet = executor.DefaultGuestNetwork

// Leases are asked for with up to 60 discovers a second apart (-t 60 -T 1):
// udhcpc stops at the first offer, so a loaded host's slow dnsmasq only
// makes it wait (four tries once failed both guests in a loaded CI run).
// dhcpScript is udhcpc's event script: it configures the lease and prints
// it, so a probe knows the guest's address.
const dhcpScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do ip route add default via "$r" dev "$interface"; break; done
	echo "lease $ip"
	;;
esac
`

// hostListener accepts TCP on 0.0.0.0:port of the host, answers
// HOSTPONG and records who connected.
type hostListener struct {
	port  int
	mu    sync.Mutex
	peers []netip.Addr
}

func listenOnAllAddresses(t *testing.T) *hostListener {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := &hostListener{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
				h.mu.Lock()
				h.peers = append(h.peers, ap.Addr().Unmap())
				h.mu.Unlock()
			}
			_, _ = c.Write([]byte("HOSTPONG\n"))
			c.Close()
		}
	}()
	return h
}

func (h *hostListener) peersIn(p netip.Prefix) []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []netip.Addr
	for _, a := range h.peers {
		if p.Contains(a) {
			out = append(out, a)
		}
	}
	return out
}

// waitGuest waits for the job's instance to run and answer exec, and
// returns its name.
func waitGuest(t *testing.T, cl *incus.Client, key string) string {
	t.Helper()
	name := waitInstance(t, cl, key).Name
	itest.WaitFor(t, "instance "+name+" to answer exec", 3*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		code, err := cl.Exec(ctx, name, incus.ExecRequest{Command: []string{"true"}}, io.Discard, io.Discard)
		return err == nil && code == 0
	})
	return name
}

// rootExec runs script with sh as root in the instance and returns its
// combined output.
func rootExec(t *testing.T, cl *incus.Client, name, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	code, err := cl.Exec(ctx, name, incus.ExecRequest{Command: []string{"sh", "-c", script}}, &out, &out)
	if err != nil {
		t.Fatalf("exec in %s: %v\n%s", name, err, out.String())
	}
	t.Logf("%s (exit %d):\n%s", name, code, out.String())
	return out.String()
}

// dhcp pushes dhcpScript and asks the bridge for a lease; it returns the
// leased address, or an invalid Addr when there was none.
func dhcp(t *testing.T, cl *incus.Client, name string) netip.Addr {
	t.Helper()
	if err := cl.PushFile(t.Context(), name, "/root/dhcp.sh", strings.NewReader(dhcpScript), incus.FileOwner{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	out := rootExec(t, cl, name, "ip link set eth0 up; udhcpc -i eth0 -n -q -t 60 -T 1 -s /root/dhcp.sh 2>&1")
	return leaseIn(out)
}

func leaseIn(out string) netip.Addr {
	sc := bufio.NewScanner(strings.NewReader(out))
	var a netip.Addr
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "lease "); ok {
			if p, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil {
				a = p
			}
		}
	}
	return a
}

// listenScript starts busybox nc answering PONG on port, for good.
func listenScript(port int) string {
	return fmt.Sprintf("setsid nc -ll -p %d -e echo PONG </dev/null >/dev/null 2>&1 &\nsleep 0.5; netstat -ltn", port)
}

// probeScript tries each host:port with busybox nc and prints "OPEN t"
// when the answer holds PONG, "SHUT t" otherwise.
func probeScript(targets []string) string {
	var b strings.Builder
	for _, tg := range targets {
		h, p, _ := strings.Cut(tg, ":")
		fmt.Fprintf(&b, "if nc -w 2 %s %s </dev/null 2>/dev/null | grep -q PONG; then echo 'OPEN %s'; else echo 'SHUT %s'; fi\n", h, p, tg, tg)
	}
	return b.String()
}

// probe runs the targets' probes after setup and returns what was open.
func probe(t *testing.T, cl *incus.Client, name, setup string, targets []string) map[string]bool {
	t.Helper()
	out := rootExec(t, cl, name, setup+"\n"+probeScript(targets))
	open := map[string]bool{}
	seen := 0
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "OPEN "); ok {
			open[v] = true
			seen++
		} else if strings.HasPrefix(l, "SHUT ") {
			seen++
		}
	}
	if seen != len(targets) {
		t.Fatalf("probe in %s printed %d of %d results: it did not run", name, seen, len(targets))
	}
	return open
}

// hostAddresses are the host's own IPv4 addresses (not loopback): a guest
// packet to any of them is for the host's services.
func hostAddresses(t *testing.T) []netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().Is4() || p.Addr().IsLoopback() {
			continue
		}
		out = append(out, p.Addr())
	}
	return out
}

// bridgePrefix is the IPv4 subnet of an Incus network, host address included.
func bridgePrefix(t *testing.T, cl *incus.Client, name string) netip.Prefix {
	t.Helper()
	n, err := cl.GetNetwork(t.Context(), name)
	if err != nil {
		t.Fatalf("network %s (made by scripts/incus-up): %v", name, err)
	}
	p, err := netip.ParsePrefix(n.Config["ipv4.address"])
	if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
		t.Fatalf("network %s: ipv4.address %q, want an IPv4 subnet of at least /24", name, n.Config["ipv4.address"])
	}
	return p
}

// otherAddress is an address of p that is neither the bridge's nor in avoid.
func otherAddress(p netip.Prefix, avoid ...netip.Addr) netip.Addr {
	for {
		a := p.Addr().As4()
		a[3] = byte(100 + mathrand.IntN(150))
		if c := netip.AddrFrom4(a); c != p.Addr() && !slices.Contains(avoid, c) {
			return c
		}
	}
}

// checkGuestInstance asserts that in is made as the executor makes a job's
// (or warm) instance: one NIC, on the guest network, filtered and
// port-isolated, and its process limit.
func checkGuestInstance(t *testing.T, in *incus.Instance, wantProcs string) {
	t.Helper()
	var nics []string
	for name, d := range in.ExpandedDevices {
		if d["type"] == "nic" {
			nics = append(nics, name)
		}
	}
	eth0 := in.ExpandedDevices["eth0"]
	if len(nics) != 1 || eth0["type"] != "nic" || eth0["network"] != guestNet {
		t.Errorf("instance %s: NICs %q, eth0 %v; want only eth0 on %s", in.Name, nics, eth0, guestNet)
	}
	for _, k := range []string{"security.mac_filtering", "security.ipv4_filtering", "security.ipv6_filtering", "security.port_isolation"} {
		if eth0[k] != "true" {
			t.Errorf("instance %s: eth0 %s = %q, want true", in.Name, k, eth0[k])
		}
	}
	if got := in.ExpandedConfig["limits.processes"]; got != wantProcs {
		t.Errorf("instance %s: limits.processes %q, want %q", in.Name, got, wantProcs)
	}
}

// createControlPair makes two instances of the runner image on the
// project's default profile (incusbr0, plain NICs): where the probes must
// succeed. The test deletes them.
func createControlPair(t *testing.T, cl *incus.Client) (c, d string) {
	t.Helper()
	sfx := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	names := []string{"gnx-ctl-a-" + sfx, "gnx-ctl-b-" + sfx}
	for _, n := range names {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
			defer cancel()
			if err := cl.DeleteInstance(ctx, n); err != nil {
				t.Errorf("delete control instance %s: %v", n, err)
			}
		})
		err := cl.CreateInstance(t.Context(), incus.InstancesPost{Name: n, Type: incus.TypeContainer,
			Source: incus.InstanceSource{Type: "image", Alias: "pikaci/dev"},
			Config: map[string]string{"limits.processes": "500", "security.guestapi": "false"}, Start: true})
		if err != nil {
			t.Fatal(err)
		}
	}
	return names[0], names[1]
}

func TestGuestsReachNeitherEachOtherNorTheHost(t *testing.T) {
	cl := require(t)
	jobs := bridgePrefix(t, cl, guestNet)
	host := listenOnAllAddresses(t)
	guestPort, selfPort := itest.FreePort(t), itest.FreePort(t)
	hostTargets := []string{fmt.Sprintf("%s:%d", jobs.Addr(), host.port)}
	for _, a := range hostAddresses(t) {
		if tg := fmt.Sprintf("%s:%d", a, host.port); !slices.Contains(hostTargets, tg) {
			hostTargets = append(hostTargets, tg)
		}
	}

	// Two jobs that hold their instances until released.
	cat := writeCatalogWith(t, catalogJob{Target: "guestnet-hold", AsRoot: true, Timeout: 900,
		Command: "while [ ! -e /tmp/guestnet-release ]; do sleep 0.2; done; echo released"})
	url := startNATS(t)
	startDaemon(t, url, "daemon-guestnet", cat, 2, "--warm", "1")
	o := newOrchestrator(t, url)
	idA, idB := uuid.NewString(), uuid.NewString()
	for _, id := range []string{idA, idB} {
		o.publish(t, protocol.JobSubject("guestnet-hold"), o.spec(id, "guestnet-hold"), id)
	}
	a, b := waitGuest(t, cl, idA), waitGuest(t, cl, idB)
	for _, n := range []string{a, b} {
		in, err := cl.GetInstance(t.Context(), n)
		if err != nil {
			t.Fatal(err)
		}
		checkGuestInstance(t, in, strconv.Itoa(executor.DefaultMaxProcesses))
	}
	// The warm pool's instances are made alike.
	var pooled *incus.Instance
	itest.WaitFor(t, "a warm pool instance", 3*time.Minute, func() bool {
		all, err := cl.ListInstances(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for i := range all {
			if strings.HasPrefix(all[i].Config[executor.ConfigOwner], rundaemon.PoolOwnerPrefix+"daemon-guestnet/") {
				pooled = &all[i]
				return true
			}
		}
		return false
	})
	if in, err := cl.GetInstance(t.Context(), pooled.Name); err == nil {
		checkGuestInstance(t, in, strconv.Itoa(executor.DefaultMaxProcesses))
	} else if !incus.IsNotFound(err) {
		t.Fatal(err)
	}

	// Positive control: DHCP (and so the bridge) still serves the guests.
	ipA, ipB := dhcp(t, cl, a), dhcp(t, cl, b)
	if !jobs.Contains(ipA) || !jobs.Contains(ipB) {
		t.Fatalf("DHCP leases %v and %v, want addresses in %s: the guests get no address from the bridge", ipA, ipB, jobs)
	}
	rootExec(t, cl, b, listenScript(guestPort))
	rootExec(t, cl, a, listenScript(selfPort))
	toB := fmt.Sprintf("%s:%d", ipB, guestPort)
	macA := rootExec(t, cl, a, "cat /sys/class/net/eth0/address")
	macA = strings.TrimSpace(macA)

	gw := jobs.Addr()
	leased := "ip addr flush dev eth0; ip route flush dev eth0 2>/dev/null; udhcpc -i eth0 -n -q -t 60 -T 1 -s /root/dhcp.sh 2>&1"
	static := func(ip netip.Addr) string {
		return fmt.Sprintf("ip addr flush dev eth0; ip addr add %s/%d dev eth0; ip route add default via %s dev eth0; ip -4 addr show eth0", ip, jobs.Bits(), gw)
	}
	spoofedMAC := fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", mathrand.IntN(256), mathrand.IntN(256), mathrand.IntN(256), mathrand.IntN(256), mathrand.IntN(256))
	setMAC := func(mac string) string {
		return fmt.Sprintf("ip addr flush dev eth0; ip link set eth0 down; ip link set eth0 address %s; ip link set eth0 up", mac)
	}
	for _, sc := range []struct {
		name, setup string
		self        bool // A can reach its own listener: the probe works in A
	}{
		{"its own address", leased, true},
		{"an address it gave itself", static(otherAddress(jobs, ipA, ipB)), false},
		{"guest B's address", static(ipB), false},
		{"its own address, B routed through the host", leased + fmt.Sprintf("; ip route add %s/32 via %s dev eth0", ipB, gw), true},
		{"a spoofed MAC and DHCP", setMAC(spoofedMAC) + "; udhcpc -i eth0 -n -q -t 2 -T 1 -s /root/dhcp.sh 2>&1", false},
		{"a spoofed MAC and an address it gave itself", setMAC(spoofedMAC) + "; " + static(otherAddress(jobs, ipA, ipB)), false},
	} {
		t.Run(sc.name, func(t *testing.T) {
			targets := append([]string{toB}, hostTargets...)
			self := fmt.Sprintf("%s:%d", ipA, selfPort)
			if sc.self {
				targets = append(targets, self)
			}
			open := probe(t, cl, a, sc.setup, targets)
			for _, tg := range targets {
				switch {
				case tg == self && !open[tg]:
					t.Errorf("A did not reach its own listener %s: the probe proves nothing", tg)
				case tg != self && open[tg]:
					t.Errorf("root in guest A with %s reached %s", sc.name, tg)
				}
			}
		})
	}
	rootExec(t, cl, a, setMAC(macA)+"; "+leased)
	if got := host.peersIn(jobs); len(got) > 0 {
		t.Errorf("the host listener accepted connections from the jobs' network: %v", got)
	}

	// Positive controls: the same probes on the project's default profile
	// (incusbr0, no filtering, no isolation) reach the other guest and the
	// host listener, so the SHUT results above are the jobs' network's.
	c, d := createControlPair(t, cl)
	ipC, ipD := dhcp(t, cl, c), dhcp(t, cl, d)
	if !ipC.IsValid() || !ipD.IsValid() {
		t.Fatalf("control guests got no DHCP lease on the default profile's network (%v, %v)", ipC, ipD)
	}
	rootExec(t, cl, d, listenScript(guestPort))
	ctlTargets := append([]string{fmt.Sprintf("%s:%d", ipD, guestPort)}, hostTargets...)
	open := probe(t, cl, c, "true", ctlTargets)
	for _, tg := range ctlTargets {
		if !open[tg] {
			t.Errorf("control: a guest on the default profile's network did not reach %s; the probe is broken", tg)
		}
	}

	// Both jobs still pass once released, and their instances go.
	for _, n := range []string{a, b} {
		rootExec(t, cl, n, "touch /tmp/guestnet-release")
	}
	res := o.waitResults(t, []string{idA, idB}, 5*time.Minute)
	for _, id := range []string{idA, idB} {
		if res[id].Status != model.StatusPassed {
			t.Errorf("job %s: %s %q, want passed", id, res[id].Status, model.Value(res[id].Message))
		}
	}
	checkNoInstances(t, cl, idA, idB)
}

// pidsCgroup is the host's pids cgroup directory of a container of the
// test project (cgroup v1 or v2), or "" when there is none.
func pidsCgroup(name string) string {
	leaf := "lxc.payload." + project + "_" + name
	for _, d := range []string{filepath.Join("/sys/fs/cgroup/pids", leaf), filepath.Join("/sys/fs/cgroup", leaf)} {
		if _, err := os.Stat(filepath.Join(d, "pids.max")); err == nil {
			return d
		}
	}
	return ""
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// pidsMaxHits is the "max" count of pids.events: forks refused at pids.max.
func pidsMaxHits(t *testing.T, dir string) int {
	t.Helper()
	for _, l := range strings.Split(readTrim(t, filepath.Join(dir, "pids.events")), "\n") {
		if v, ok := strings.CutPrefix(l, "max "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

func TestForkBombStaysInItsGuest(t *testing.T) {
	cl := require(t)
	const limit = 256
	// The bomb waits for the test's go: it goes off only once the host
	// has shown the limit on the guest's cgroup. Before that, root in the
	// guest tries to lift the limit.
	bomb := `echo max > /sys/fs/cgroup/pids/pids.max 2>/dev/null && echo "lifted (v1)"
echo max > /sys/fs/cgroup/pids.max 2>/dev/null && echo "lifted (v2)"
touch /tmp/bomb-ready
while [ ! -e /tmp/bomb-go ]; do sleep 0.2; done
b() { b | b & }
b
exec sleep 100000`
	cat := writeCatalogWith(t, catalogJob{Target: "guestnet-bomb", AsRoot: true, Timeout: 900, Command: bomb})
	url := startNATS(t)
	startDaemon(t, url, "daemon-bomb", cat, 2, "--guest-max-processes", strconv.Itoa(limit))
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("guestnet-bomb"), o.spec(id, "guestnet-bomb"), id)
	inst := waitInstance(t, cl, id)
	if got := inst.Config["limits.processes"]; got != strconv.Itoa(limit) {
		t.Fatalf("bomb instance %s: limits.processes %q, want %d; not setting it off", inst.Name, got, limit)
	}
	itest.WaitFor(t, "the bomb job to be ready", 3*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		code, err := cl.Exec(ctx, inst.Name, incus.ExecRequest{Command: []string{"test", "-e", "/tmp/bomb-ready"}}, io.Discard, io.Discard)
		return err == nil && code == 0
	})
	cg := pidsCgroup(inst.Name)
	if cg == "" {
		t.Fatalf("no pids cgroup of %s on the host; not setting the bomb off", inst.Name)
	}
	if got := readTrim(t, filepath.Join(cg, "pids.max")); got != strconv.Itoa(limit) {
		t.Fatalf("%s/pids.max = %q after root in the guest tried to lift it, want %d; not setting the bomb off", cg, got, limit)
	}
	before := pidsMaxHits(t, cg)
	if err := cl.PushFile(t.Context(), inst.Name, "/tmp/bomb-go", strings.NewReader("go\n"), incus.FileOwner{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	itest.WaitFor(t, "the bomb to hit pids.max", 3*time.Minute, func() bool { return pidsMaxHits(t, cg) > before })
	if cur, _ := strconv.Atoi(readTrim(t, filepath.Join(cg, "pids.current"))); cur > limit {
		t.Errorf("pids.current %d, over the limit %d", cur, limit)
	}
	t.Logf("pids.max hit %d times, pids.current %s", pidsMaxHits(t, cg)-before, readTrim(t, filepath.Join(cg, "pids.current")))

	// The host still forks and incusd still answers.
	if out, err := exec.Command("sh", "-c", "echo host ok").Output(); err != nil || string(out) != "host ok\n" {
		t.Errorf("the host could not run a command during the bomb: %v %q", err, out)
	}
	if _, err := cl.Server(t.Context()); err != nil {
		t.Errorf("incusd during the bomb: %v", err)
	}
	// A parallel job passes.
	par := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-pass"), o.spec(par, "demo-pass"), par)
	checkPassed(t, par, o.waitResults(t, []string{par}, 5*time.Minute)[par])
	if hits := pidsMaxHits(t, cg); hits <= before {
		t.Errorf("pids.events max %d: the bomb stopped hitting the limit", hits)
	}

	// The bomb's job is ended by a cancel and its instance deleted.
	cmd := exec.Command(jciBin, "cancel", id, "--wait", "--timeout", "3m")
	cmd.Env = append(os.Environ(), "JERICHOCI_NATS_URL="+url)
	out, err := cmd.CombinedOutput()
	res := o.result(t, id)
	if res == nil || res.Status != model.StatusFailed || model.Value(res.Message) != run.MsgCancelled {
		t.Errorf("bomb job after cancel: %+v (cancel: %v)\n%s", res, err, out)
	}
	checkNoInstances(t, cl, id)
}
