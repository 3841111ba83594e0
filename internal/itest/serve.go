package itest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartServe starts cmd, a `jerichoci serve`, with its output in log, and
// waits until it pulls work ("workers on nats://" in its log); a serve that
// exits first fails the test with its log. When the test ends it gets
// SIGTERM (SIGKILL after a minute) and its log's tail is shown if the test
// failed. The returned channel closes when the process has exited.
func StartServe(t testing.TB, name string, cmd *exec.Cmd, log *SyncBuffer) chan struct{} {
	t.Helper()
	done := LaunchServe(t, name, cmd, log)
	WaitServing(t, name, cmd, log, done, 60*time.Second)
	return done
}

// LaunchServe is StartServe without the wait: several daemons can be
// started at one moment, then waited for with WaitServing.
func LaunchServe(t testing.TB, name string, cmd *exec.Cmd, log *SyncBuffer) chan struct{} {
	t.Helper()
	done := make(chan struct{})
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("daemon %s log:\n%s", name, Tail(log.String(), 80))
		}
		KeepLog(t, name, log.String())
	})
	return done
}

// KeepLog writes a daemon's whole log to $JERICHOCI_TEST_LOGS/<test>.<name>.log
// (appended) when that variable names a directory: a passing run's logs, read after
// it (the failure tail above is 80 lines).
func KeepLog(t testing.TB, name, text string) {
	dir := os.Getenv("JERICHOCI_TEST_LOGS")
	if dir == "" {
		return
	}
	file := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"."+name+".log")
	// Appended: a test run with -count=N keeps every round's log.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err == nil {
		_, err = f.WriteString(text)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Logf("keep daemon %s log: %v", name, err)
	}
}

// WaitServing waits within bound until the serve LaunchServe started pulls
// work; one that exits first fails the test with its log.
func WaitServing(t testing.TB, name string, cmd *exec.Cmd, log *SyncBuffer, done chan struct{}, bound time.Duration) {
	t.Helper()
	WaitFor(t, "daemon "+name+" to start", bound, func() bool {
		select {
		case <-done:
			t.Fatalf("daemon %s exited at start (%v):\n%s", name, cmd.ProcessState, Tail(log.String(), 60))
		default:
		}
		return strings.Contains(log.String(), "workers on nats://")
	})
}
