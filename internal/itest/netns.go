package itest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"jerichoci/internal/procid"
)

// HostNet is a network of "hosts" made by a test on this machine: one
// network namespace per host, each with one veth link (eth0) into a
// bridge that lives in a switch namespace of its own, and one more veth
// from the switch to the root namespace (Root, the address the hosts
// reach this machine at: incusd through a Relay). Nothing of it touches
// the root namespace's other interfaces, routes or firewall; the subnet
// is a 10.x.y.0/24 that no address or route of the root namespace
// overlaps. Everything is deleted when the test ends, whether it passed
// or not (docs/RELIABILITY.md, "Hosts in network namespaces").
type HostNet struct {
	// Prefix is what every name of this network starts with (jhb + 4 hex
	// digits): namespaces PREFIX-NAME, interfaces PREFIXs<i> and PREFIXr.
	Prefix string
	// Subnet is the network, 10.x.y.0/24; Root is 10.x.y.254.
	Subnet *net.IPNet
	Root   net.IP
	hosts  map[string]*NetHost
	sw     string // the switch namespace
}

// NetHost is one host: a namespace with an address on the network.
type NetHost struct {
	Name   string // as the test named it (h1, client…)
	NS     string // the namespace's name
	IP     net.IP
	swPort string // its link's end on the switch
}

// NewHostNet makes the namespaces named names (at most 250) and links
// them to a new switch; host i (from 0) gets address 10.x.y.(i+1). It
// needs root and iproute2's ip.
func NewHostNet(t testing.TB, names ...string) *HostNet {
	t.Helper()
	if len(names) > 250 {
		t.Fatalf("%d hosts: at most 250 on a /24", len(names))
	}
	sweepDeadNets(t)
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	n := &HostNet{Prefix: "jhb" + hex.EncodeToString(b), hosts: map[string]*NetHost{}}
	n.Subnet = freeSubnet(t)
	n.Root = addrIn(n.Subnet, 254)
	n.sw = n.Prefix + "-sw"
	claimNet(t, n.Prefix)
	// Registered first, so it runs last: after the processes in the
	// namespaces (registered later) have ended.
	t.Cleanup(func() { n.delete(t) })
	IP(t, "netns", "add", n.sw)
	IP(t, "-n", n.sw, "link", "set", "lo", "up")
	IP(t, "-n", n.sw, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
	IP(t, "-n", n.sw, "link", "set", "br0", "up")
	rootLink := n.Prefix + "r"
	IP(t, "link", "add", rootLink, "type", "veth", "peer", "name", "root", "netns", n.sw)
	IP(t, "-n", n.sw, "link", "set", "root", "master", "br0", "up")
	IP(t, "addr", "add", n.Root.String()+"/24", "dev", rootLink)
	IP(t, "link", "set", rootLink, "up")
	for i, name := range names {
		h := &NetHost{Name: name, NS: n.Prefix + "-" + name, IP: addrIn(n.Subnet, byte(i+1)), swPort: fmt.Sprintf("%ss%d", n.Prefix, i+1)}
		n.hosts[name] = h
		IP(t, "netns", "add", h.NS)
		IP(t, "-n", h.NS, "link", "set", "lo", "up")
		IP(t, "-n", h.NS, "link", "add", "eth0", "type", "veth", "peer", "name", h.swPort, "netns", n.sw)
		IP(t, "-n", n.sw, "link", "set", h.swPort, "master", "br0", "up")
		IP(t, "-n", h.NS, "addr", "add", h.IP.String()+"/24", "dev", "eth0")
		IP(t, "-n", h.NS, "link", "set", "eth0", "up")
	}
	return n
}

// Host is the host named name; an unknown name fails the test.
func (n *HostNet) Host(t testing.TB, name string) *NetHost {
	t.Helper()
	h, ok := n.hosts[name]
	if !ok {
		t.Fatalf("no host %q in network %s", name, n.Prefix)
	}
	return h
}

// Command is name with args run in host h's namespace (ip netns exec,
// which execs it: the process's pid is the command's own).
func (h *NetHost) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Cut takes host h's link down at the switch: it reaches nobody, not
// even this machine, until Heal.
func (n *HostNet) Cut(t testing.TB, h *NetHost) { IP(t, "-n", n.sw, "link", "set", h.swPort, "down") }

// Heal brings host h's link up again.
func (n *HostNet) Heal(t testing.TB, h *NetHost) { IP(t, "-n", n.sw, "link", "set", h.swPort, "up") }

// Block makes addr unreachable from host h only (a prohibit route in its
// namespace, so a connection fails at once), until Unblock.
func (n *HostNet) Block(t testing.TB, h *NetHost, addr net.IP) {
	IP(t, "-n", h.NS, "route", "add", "prohibit", addr.String()+"/32")
}

// Unblock takes the route Block added away.
func (n *HostNet) Unblock(t testing.TB, h *NetHost, addr net.IP) {
	IP(t, "-n", h.NS, "route", "del", "prohibit", addr.String()+"/32")
}

// delete removes the namespaces (their interfaces go with them) and the
// root's end of the switch link, each only if it is this network's.
func (n *HostNet) delete(t testing.TB) {
	var errs []string
	for _, h := range n.hosts {
		if out, err := exec.Command("ip", "netns", "del", h.NS).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Sprintf("ip netns del %s: %v: %s", h.NS, err, out))
		}
	}
	// Deleting the switch namespace deletes the root link's peer, so the
	// link itself; an explicit delete covers a half-made network.
	_ = exec.Command("ip", "netns", "del", n.sw).Run()
	_ = exec.Command("ip", "link", "del", n.Prefix+"r").Run()
	if len(errs) > 0 {
		t.Errorf("clean up network %s: %s", n.Prefix, strings.Join(errs, "; "))
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), n.Prefix+"-") {
		t.Errorf("namespaces of network %s left behind:\n%s", n.Prefix, out)
		return
	}
	_ = os.Remove(filepath.Join(netOwnerDir, n.Prefix))
}

// netOwnerDir holds a file per network a test made, named by its prefix
// and holding the test process's procid. A test process killed by `go
// test -timeout` runs no cleanup: the next NewHostNet on this machine
// finds its networks by that file and removes them (sweepDeadNets). A
// network without the file is never touched.
const netOwnerDir = "/run/jerichoci-itest-netns"

var netPrefixPattern = regexp.MustCompile(`^jhb[0-9a-f]{4}$`)

// claimNet records this test process as the owner of the network prefix.
func claimNet(t testing.TB, prefix string) {
	t.Helper()
	self, err := procid.Self()
	if err != nil {
		t.Fatalf("name this test process for network %s: %v", prefix, err)
	}
	if err := os.MkdirAll(netOwnerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(netOwnerDir, prefix), []byte(self.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sweepDeadNets removes the networks whose owning test process is
// provably gone: it kills what still runs in their namespaces (the
// nats-servers and daemons the test started), deletes the namespaces and
// the root's end of the switch link, then the owner file.
func sweepDeadNets(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(netOwnerDir)
	if err != nil {
		return // none made yet
	}
	var list string
	for _, e := range entries {
		prefix := e.Name()
		b, err := os.ReadFile(filepath.Join(netOwnerDir, prefix))
		if err != nil || !netPrefixPattern.MatchString(prefix) || !(procid.Host{}).Gone(strings.TrimSpace(string(b))) {
			continue
		}
		if list == "" {
			out, err := exec.Command("ip", "netns", "list").Output()
			if err != nil {
				t.Fatalf("ip netns list: %v", err)
			}
			list = string(out)
		}
		var gone []string
		for _, line := range strings.Split(list, "\n") {
			ns, _, _ := strings.Cut(line, " ")
			if !strings.HasPrefix(ns, prefix+"-") {
				continue
			}
			pids, _ := exec.Command("ip", "netns", "pids", ns).Output()
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("sweep: ip netns del %s: %v: %s", ns, err, out)
				continue
			}
			gone = append(gone, ns)
		}
		_ = exec.Command("ip", "link", "del", prefix+"r").Run()
		_ = os.Remove(filepath.Join(netOwnerDir, prefix))
		t.Logf("removed network %s of a test process that is gone (%s): namespaces %v", prefix, strings.TrimSpace(string(b)), gone)
	}
}

// IP runs iproute2's ip with args; a failure fails the test.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out)
}

// freeSubnet picks a 10.x.y.0/24 (x from 100 to 249) that no address or
// route of the root namespace overlaps.
func freeSubnet(t testing.TB) *net.IPNet {
	t.Helper()
	var used []*net.IPNet
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		for _, line := range strings.Split(IP(t, args...), "\n") {
			for _, f := range strings.Fields(line) {
				if !strings.Contains(f, "/") && net.ParseIP(f) != nil {
					f += "/32"
				}
				if _, cidr, err := net.ParseCIDR(f); err == nil {
					used = append(used, cidr)
				}
			}
		}
	}
	for range 200 {
		x, _ := rand.Int(rand.Reader, big.NewInt(150))
		y, _ := rand.Int(rand.Reader, big.NewInt(256))
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 100+x.Int64(), y.Int64()))
		free := true
		for _, u := range used {
			if u.Contains(cand.IP) || cand.Contains(u.IP) {
				free = false
			}
		}
		if free {
			return cand
		}
	}
	t.Fatal("no free 10.x.y.0/24 for the test's network")
	return nil
}

func addrIn(n *net.IPNet, last byte) net.IP {
	ip := append(net.IP(nil), n.IP.To4()...)
	ip[3] = last
	return ip
}

// Relay forwards the TCP connections made to listen (HOST:PORT; port 0
// picks one) to target, byte for byte, until the test ends; it returns the
// address it listens on. TLS passes through it untouched: the client still
// pins the server's certificate and presents its own to the server.
func Relay(t testing.TB, listen, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("relay to %s: %v", target, err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			track(in, true)
			track(out, true)
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			go pipe(out, in)
			go func() {
				pipe(in, out)
				in.Close()
				out.Close()
				track(in, false)
				track(out, false)
			}()
		}
	}()
	return l.Addr().String()
}
