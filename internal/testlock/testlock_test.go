package testlock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// flock locks belong to the open file, so two Acquire calls in one
// process conflict as two processes would.
func TestSharedHoldersExcludeAnExclusiveOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incusd.lock")
	a, err := Acquire(path, Shared, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(path, Shared, 0)
	if err != nil {
		t.Fatalf("a second shared lock: %v", err)
	}
	start := time.Now()
	if x, err := Acquire(path, Exclusive, 300*time.Millisecond); !errors.Is(err, ErrTimeout) {
		x.Release()
		t.Fatalf("exclusive lock while two shared ones are held: %v, want ErrTimeout", err)
	} else if !strings.Contains(err.Error(), "held by pid") {
		t.Errorf("the timeout does not name the holders: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %s, want the whole 300ms wait", d)
	}
	a.Release()
	if _, err := Acquire(path, Exclusive, 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("exclusive lock while one shared lock is held: %v, want ErrTimeout", err)
	}
	// Freed while someone waits: the waiter gets it.
	go func() { time.Sleep(200 * time.Millisecond); b.Release() }()
	x, err := Acquire(path, Exclusive, 10*time.Second)
	if err != nil {
		t.Fatalf("exclusive lock after the shared ones went: %v", err)
	}
	if x.Waited < 150*time.Millisecond {
		t.Errorf("waited %s, want about 200ms", x.Waited)
	}
	if _, err := Acquire(path, Shared, 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("shared lock while an exclusive one is held: %v, want ErrTimeout", err)
	}
	hs := Holders(x.f)
	if len(hs) != 1 || hs[0].PID != os.Getpid() || hs[0].Kind != "WRITE" {
		t.Errorf("holders %+v, want this process (%d) as the one WRITE holder", hs, os.Getpid())
	}
	x.Release()
	x.Release() // a second release does nothing
	s, err := Acquire(path, Shared, 0)
	if err != nil {
		t.Fatalf("shared lock after the exclusive one went: %v", err)
	}
	s.Release()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 {
		t.Errorf("lock file mode %v, want 0666 so that every user can lock it", fi.Mode().Perm())
	}
}

// A child process does not inherit the lock: an incusd a fault test starts
// again must not keep the exclusive lock after the test.
func TestChildDoesNotInheritTheLock(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep command")
	}
	path := filepath.Join(t.TempDir(), "incusd.lock")
	x, err := Acquire(path, Exclusive, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	x.Release()
	s, err := Acquire(path, Exclusive, 2*time.Second)
	if err != nil {
		t.Fatalf("the lock is still held after its holder released it, with a child alive: %v", err)
	}
	s.Release()
}

func TestPath(t *testing.T) {
	t.Setenv(EnvPath, "")
	if got := Path(); got != DefaultPath {
		t.Errorf("Path() = %q, want %q", got, DefaultPath)
	}
	t.Setenv(EnvPath, "/run/x.lock")
	if got := Path(); got != "/run/x.lock" {
		t.Errorf("Path() with %s set = %q", EnvPath, got)
	}
}
