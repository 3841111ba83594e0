// Package itest is the harness the integration tests share (test/daemon,
// test/incusfault, executor/hostlocal's): free ports, a separate
// nats-server process, output buffers safe to read while a process writes
// them, polling with a bound, and the processes a test's jobs left running
// (LiveWithMarker). Only tests import it.
package itest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartNATS runs bin (a nats-server) as a separate process with JetStream
// stored in a temporary directory, on a free port, until the test ends;
// it returns the server's URL once a client can connect.
func StartNATS(t testing.TB, bin string) string {
	t.Helper()
	port := FreePort(t)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", t.TempDir())
	var logb SyncBuffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if nc, err := nats.Connect(url); err == nil {
			nc.Close()
			return url
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nats-server did not come up on %s:\n%s", url, logb.String())
	return ""
}

// SyncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// CleanEnv is the test's environment without the settings that would point
// a jerichoci process elsewhere: JERICHOCI_NATS_* and PIKACI_STATE_ROOT.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "JERICHOCI_NATS_") || strings.HasPrefix(kv, "PIKACI_STATE_ROOT=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls cond until it holds or the bound passes (a bound, not a
// timing assertion).
func WaitFor(t testing.TB, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting %s for %s", bound, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// LinesWith counts the lines of log that contain every part.
func LinesWith(log string, parts ...string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}

// GoBuild builds pkg into out from the module at root.
func GoBuild(root, out, pkg string) ([]byte, error) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	return cmd.CombinedOutput()
}

// LiveWithMarker lists the live processes (neither zombie nor dead) whose
// command line holds marker, a string unique to the test: what a job left
// running, found by a marker its command carries.
func LiveWithMarker(t testing.TB, marker string) []int {
	t.Helper()
	if marker == "" {
		t.Fatal("empty marker")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), marker) {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(status)) {
			if st, ok := strings.CutPrefix(line, "State:"); ok {
				if st = strings.TrimSpace(st); st != "" && st[0] != 'Z' && st[0] != 'X' {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}
