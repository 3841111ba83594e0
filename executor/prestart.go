package executor

import (
	"context"
	"io"
	"sync"
)

// preExec is a guest runner started ahead of its job.
type preExec struct {
	stdout, stderr *switchWriter
	cancel         context.CancelFunc
	done           chan execResult
}

type execResult struct {
	code int
	err  error
}

// ended reports whether the runner already ended (before any job).
func (p *preExec) ended() bool {
	select {
	case r := <-p.done:
		p.done <- r
		return true
	default:
		return false
	}
}

// switchWriter holds what is written until attach gives it its writer.
type switchWriter struct {
	mu  sync.Mutex
	buf []byte
	w   io.Writer
}

func (s *switchWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		return s.w.Write(b)
	}
	if len(s.buf) < 1<<20 { // a runner waiting for its request prints little
		s.buf = append(s.buf, b...)
	}
	return len(b), nil
}

func (s *switchWriter) attach(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > 0 {
		_, _ = w.Write(s.buf)
		s.buf = nil
	}
	s.w = w
}

// startRunner starts the guest runner, waiting for its request, with its
// output held until a job attaches to it.
func (p *Pool) startRunner(name string) *preExec {
	ctx, cancel := context.WithCancel(context.Background())
	pe := &preExec{stdout: &switchWriter{}, stderr: &switchWriter{}, cancel: cancel, done: make(chan execResult, 1)}
	cmd := []string{p.Config.RunnerPath, "--wait-for-request", PoolRequestGuestPath}
	go func() {
		code, err := p.Backend.Exec(ctx, name, ExecRequest{Command: cmd, Cwd: "/"}, pe.stdout, pe.stderr)
		pe.done <- execResult{code, err}
	}()
	return pe
}
