package itest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"jerichoci/internal/procid"
	"jerichoci/internal/testenv"
)

// A network whose owning test process is gone is swept by the next
// NewHostNet: the process left running in its namespace is killed and the
// namespace deleted. A network whose owner lives, and one without an owner
// file, are left alone.
func TestSweepDeadNets(t *testing.T) {
	testenv.Needs(t, "root and iproute2 (network namespaces)")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root for network namespaces")
	}
	// A process that has ended: its procid is provably gone.
	dead := exec.Command("true")
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	deadID, err := procid.Host{}.Of(dead.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	_ = dead.Wait()
	self, err := procid.Self()
	if err != nil {
		t.Fatal(err)
	}
	nets := []struct {
		prefix, owner string
		swept         bool
	}{
		{"jhbdea0", deadID.String(), true},
		{"jhbdea1", self.String(), false},
		{"jhbdea2", "", false}, // no owner file
	}
	if err := os.MkdirAll(netOwnerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sleepers := map[string]*exec.Cmd{}
	for _, n := range nets {
		ns := n.prefix + "-h1"
		IP(t, "netns", "add", ns)
		t.Cleanup(func() {
			_ = exec.Command("ip", "netns", "del", ns).Run()
			_ = os.Remove(filepath.Join(netOwnerDir, n.prefix))
		})
		if n.owner != "" {
			if err := os.WriteFile(filepath.Join(netOwnerDir, n.prefix), []byte(n.owner+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("ip", "netns", "exec", ns, "sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sleepers[n.prefix] = cmd
	}
	sweepDeadNets(t)
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		there := strings.Contains(string(out), n.prefix+"-h1")
		if there == n.swept {
			t.Errorf("network %s (owner %q): namespace there %v after the sweep, want %v", n.prefix, n.owner, there, !n.swept)
		}
		cmd := sleepers[n.prefix]
		alive := cmd.Process.Signal(syscall.Signal(0)) == nil
		if n.swept {
			err := cmd.Wait()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if err == nil || !ws.Signaled() {
				t.Errorf("network %s: its process was not killed by the sweep (%v)", n.prefix, err)
			}
			if _, err := os.Stat(filepath.Join(netOwnerDir, n.prefix)); !os.IsNotExist(err) {
				t.Errorf("network %s: owner file still there (%v)", n.prefix, err)
			}
		} else if !alive {
			t.Errorf("network %s: its process was killed, though its owner lives or is unknown", n.prefix)
		}
	}
}
