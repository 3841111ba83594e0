package executor

import (
	"fmt"
	"io"
	"os"
	"sync"

	"jerichoci/internal/units"
	"jerichoci/internal/writers"
	"jerichoci/model"
)

// fileWriter writes to f and keeps its first error, so that a failure on
// the host is told apart from one of the backend.
type fileWriter struct {
	f   *os.File
	err error
}

func (w *fileWriter) Write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(b)
	if err != nil {
		w.err = fmt.Errorf("write %s: %w", w.f.Name(), err)
	}
	return n, w.err
}

// outputSummary tells host.log how much runner output it did not repeat,
// when the cap was hit.
func (j *jobRun) outputSummary() {
	if j.output == nil {
		return
	}
	if total, omitted := j.output.omitted(); omitted > 0 {
		j.hostf("runner output: %d bytes, %d not repeated in host.log", total, omitted)
	}
}

// outputOverResult is the failed result of a job whose output went past
// its limit: the runner was stopped, and its artifacts are not collected
// (their guest.log would be as long again).
func (j *jobRun) outputOverResult() Result {
	limit := units.FormatSize(j.output.limit)
	j.hostf("runner output went past %s, the job output limit; the rest was dropped and the guest runner stopped", limit)
	j.outputSummary()
	return Result{Status: model.StatusFailed, Message: fmt.Sprintf("output exceeded %s (the job output limit, --max-job-output); the job was stopped", limit)}
}

// maxLine is the longest line of runner output held for host.log,
// newline included: a longer one goes there in pieces of this size.
const maxLine = writers.DefaultMaxLine

// runnerOutput takes the runner's stdout and stderr: all of it goes to raw
// (artifacts/guest.log) as it comes, and prefixed lines go to host until
// hostCap bytes of output went there (negative: no cap); then one line
// says that the rest is only in guest.log.
type runnerOutput struct {
	mu      sync.Mutex
	host    io.Writer
	raw     io.Writer
	hostCap int64
	total   int64 // bytes of output seen
	shown   int64 // bytes of output repeated in host.log
	capped  bool
	// limit is the job's output limit (Config.MaxOutputBytes; 0: none):
	// output past it is dropped and over is closed, once.
	limit int64
	over  chan struct{}
}

// newRunnerOutput is a runnerOutput whose over channel is ready.
func newRunnerOutput(host, raw io.Writer, hostCap, limit int64) *runnerOutput {
	return &runnerOutput{host: host, raw: raw, hostCap: hostCap, limit: limit, over: make(chan struct{})}
}

// exceeded reports whether the output went past its limit.
func (o *runnerOutput) exceeded() bool {
	select {
	case <-o.over:
		return true
	default:
		return false
	}
}

// writer returns a writer for one stream, whose lines get prefix.
func (o *runnerOutput) writer(prefix string) *prefixWriter {
	return &prefixWriter{out: o, lines: writers.NewLines(prefix, maxLine, func(line []byte, n int) error {
		return o.show(line, int64(n)) // under o.mu: Write and flush hold it
	})}
}

// omitted returns the bytes of output seen and those not in host.log.
func (o *runnerOutput) omitted() (total, omitted int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total, o.total - o.shown
}

// show writes one prefixed line holding n bytes of output to host, unless
// the cap is reached. The caller holds o.mu.
func (o *runnerOutput) show(line []byte, n int64) error {
	if o.capped {
		return nil
	}
	if o.hostCap >= 0 && o.shown+n > o.hostCap {
		o.capped = true
		_, err := fmt.Fprintf(o.host, "[pikaci] runner output past %d bytes is not repeated in host.log; artifacts/guest.log has all of it\n", o.hostCap)
		return err
	}
	o.shown += n
	_, err := o.host.Write(line)
	return err
}

// prefixWriter writes one stream unchanged to the output's raw writer and
// as prefixed lines, at most maxLine bytes each, to its host log.
type prefixWriter struct {
	out   *runnerOutput
	lines *writers.Lines
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	o := p.out
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(b)
	if o.limit > 0 && o.total+int64(n) > o.limit {
		if !o.exceeded() {
			close(o.over) // the runner is stopped (waitForRunner)
		}
		if o.total >= o.limit {
			return n, nil // past the limit: dropped
		}
		b = b[:o.limit-o.total]
	}
	if _, err := o.raw.Write(b); err != nil {
		return 0, err
	}
	o.total += int64(len(b))
	if _, err := p.lines.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// flush writes a last line that has no newline.
func (p *prefixWriter) flush() {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	_ = p.lines.Flush() // a host.log error is the host log's, seen by its close
}
