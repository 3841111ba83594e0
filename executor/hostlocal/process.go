package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"jerichoci/internal/mask"
)

// exit is how the command ended.
type exit struct {
	timedOut bool
	code     int32 // the exit code, 1 when a signal ended it
	signaled bool
	sig      syscall.Signal // the signal that ended it, when signaled
}

// describe says how the command ended, for host.log's "[pikaci]
// host-local job …" line: "exited with 3", "was killed by signal 9
// (killed)". The original printed Rust's `Some(3)`/`None` there; no
// record carries that line (the record's message is docs/CONTRACTS.md's
// "host-local command exited with <N>"), so ours reads naturally.
func (e exit) describe() string {
	if e.signaled {
		return "was killed by signal " + strconv.Itoa(int(e.sig)) + " (" + e.sig.String() + ")"
	}
	return "exited with " + strconv.Itoa(int(e.code))
}

// spawn runs argv in its own process group with its output going raw to the
// host log, until it exits, the job's deadline passes or ctx ends; the last
// two kill the whole group.
func (j *jobRun) spawn(ctx context.Context, argv []string, dir string, env []string) (exit, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u := j.x.user(); u != nil {
		cmd.SysProcAttr.Credential = u.credential()
	}
	// One writer for both: exec then copies both streams through one pipe,
	// in the order the command wrote them (it does so only when Stdout and
	// Stderr are the same comparable value: wrapping one of them would
	// give two pipes and lose the order; docs/INCUS.md, "Output order",
	// and test/daemon/order_test.go).
	// Masked as a stream: a secret split across two reads of the pipe is
	// masked too.
	out := j.job.Mask.Writer(j.host)
	defer mask.Flush(out) //nolint:errcheck // host.log's errors are its writer's
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return exit{}, fmt.Errorf("run host-local job `%s`: %w", j.job.ID, err)
	}
	pid := cmd.Process.Pid
	j.log.Info("host-local command started", zap.Int("pid", pid))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(time.Until(j.deadline))
	defer timer.Stop()

	var err error
	select {
	case err = <-done:
	case <-timer.C:
		j.hostf("timeout after %ds, killing host-local command", j.job.TimeoutSecs)
		j.log.Warn("host-local command timed out; killing its process group", zap.Int("pid", pid))
		killGroup(pid)
		<-done
		return exit{timedOut: true}, nil
	case <-ctx.Done():
		j.log.Info("cancelled; killing the host-local command's process group", zap.Int("pid", pid))
		killGroup(pid)
		<-done
		return exit{}, fmt.Errorf("host-local command killed: %w", ctx.Err())
	}
	var xerr *exec.ExitError
	switch {
	case err == nil:
	case errors.Is(err, exec.ErrWaitDelay):
		j.hostf("host-local command exited but processes it started still held its output after %s; stopped copying it", waitDelay)
	case errors.As(err, &xerr):
	default:
		return exit{}, fmt.Errorf("wait for host-local job `%s`: %w", j.job.ID, err)
	}
	st := cmd.ProcessState
	if code := st.ExitCode(); code >= 0 {
		return exit{code: int32(code)}, nil
	}
	x := exit{code: 1, signaled: true}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		x.sig = ws.Signal()
	}
	return x, nil
}

// killGroup kills the process group led by pid. Linux does not hand out an
// id again while a process or group still uses it, so this cannot hit
// another group.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
