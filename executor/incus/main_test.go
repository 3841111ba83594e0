package incus

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"jerichoci/internal/testenv"
	"jerichoci/internal/testlock"
)

// TestMain fails the package when goroutines of net/http or of this package
// outlive the tests: a client not closed, a body not closed, a tailing or
// upload goroutine not ended.
func TestMain(m *testing.M) {
	// Shared with the other packages that use incusd; test/incusfault,
	// which kills incusd, takes it exclusively. The fast run (-short)
	// leaves out every test that uses incusd, so it takes no lock.
	var code int
	if testenv.Short() {
		code = m.Run()
	} else {
		lock := testlock.MustShared()
		code = m.Run()
		lock.Release()
	}
	if code == 0 {
		if leaks := waitForLeaks(10 * time.Second); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: %d goroutines leaked by the tests:\n\n%s\n", len(leaks), strings.Join(leaks, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// waitForLeaks waits (bounded) for leaked goroutines to end and returns the
// stacks of those still there.
func waitForLeaks(limit time.Duration) []string {
	deadline := time.Now().Add(limit)
	for {
		leaks := leakedGoroutines()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leakedGoroutines returns the stacks of the other goroutines that run code
// of net/http, the net package or this package.
func leakedGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	// The first stack is the calling goroutine's.
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue
		}
		if strings.Contains(g, "net/http.") || strings.Contains(g, "net.(*") ||
			strings.Contains(g, "jerichoci/executor/incus.") {
			out = append(out, g)
		}
	}
	return out
}

// TestLeakCheckSeesGoroutines makes sure the check in TestMain can fail.
func TestLeakCheckSeesGoroutines(t *testing.T) {
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-release
	}()
	leaks := leakedGoroutines()
	close(release)
	<-done
	found := false
	for _, g := range leaks {
		if strings.Contains(g, "TestLeakCheckSeesGoroutines.func1") {
			found = true
		}
	}
	if !found {
		t.Fatalf("leakedGoroutines() = %d stacks, none of the blocked test goroutine", len(leaks))
	}
}
