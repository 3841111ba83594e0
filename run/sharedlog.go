package run

import (
	"fmt"
	"io"
)

// A shared prepare node (a staged Nix build several jobs consume) writes
// its log to every consuming job's host.log, as the original does
// (docs/CONTRACTS.md, "Staged outputs"), but the live view (the terminal
// of `run`, NATS, `enqueue --wait`) shows it once, under the first
// consumer: the others' copies go to their files only.

// fileOnly writes to a host log's file, masked and made safe as every
// write is, but not to its live copy.
type fileOnly struct{ l *lockedFile }

func (w fileOnly) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	tee := w.l.tee
	w.l.tee = nil
	defer func() { w.l.tee = tee }()
	if err := w.l.writeSafe(w.l.safe.Append(w.l.buf[:0], w.l.mask.Bytes(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sharedLogs are the writers of a shared node's output for jobs: the
// first job's host log with its live copy, the others' files alone.
func sharedLogs(jobs []*jobState) []io.Writer {
	out := make([]io.Writer, 0, len(jobs))
	for i, js := range jobs {
		if i == 0 {
			out = append(out, js.hostLog)
			continue
		}
		out = append(out, fileOnly{js.hostLog})
	}
	return out
}

// sharedLine writes a "[pikaci] …" line to every job's host log, shown
// live once (sharedLogs).
func sharedLine(jobs []*jobState, format string, a ...any) {
	line := fmt.Sprintf("[pikaci] "+format+"\n", a...)
	for _, w := range sharedLogs(jobs) {
		_, _ = io.WriteString(w, line)
	}
}
