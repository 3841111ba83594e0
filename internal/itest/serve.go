package itest

import (
	"os/exec"
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
	})
	WaitFor(t, "daemon "+name+" to start", 60*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("daemon %s exited at start (%v):\n%s", name, cmd.ProcessState, Tail(log.String(), 60))
		default:
		}
		return strings.Contains(log.String(), "workers on nats://")
	})
	return done
}
