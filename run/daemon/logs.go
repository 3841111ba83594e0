package daemon

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"jerichoci/run/protocol"
)

// Live logs: each job's host.log, as it is written, goes out on
// protocol.LogSubject in chunks of at most logChunkBytes, at most
// logChunkEvery after the first byte waiting, in order, numbered from 1
// (protocol.HeaderLogSeq). host.log itself is capped (the runner's lines
// stop after 1 MiB), so a job printing gigabytes sends about 1 MiB.
const (
	logChunkBytes = 64 << 10
	logChunkEvery = 100 * time.Millisecond
)

// logChunker publishes one job's output.
type logChunker struct {
	pub     Publisher
	subject string
	jobKey  string
	runID   string
	log     *zap.Logger

	mu     sync.Mutex
	buf    []byte
	seq    uint64
	timer  *time.Timer
	closed bool
}

func newLogChunker(pub Publisher, jobKey, runID, job string, log *zap.Logger) *logChunker {
	return &logChunker{pub: pub, subject: protocol.LogSubject(jobKey, runID, job), jobKey: jobKey, runID: runID, log: log}
}

// Write buffers p and sends full chunks at once; a partial chunk goes out
// logChunkEvery after its first byte. It never fails the job.
func (c *logChunker) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	for len(c.buf) >= logChunkBytes {
		c.sendLocked(c.buf[:logChunkBytes])
		c.buf = c.buf[logChunkBytes:]
	}
	if len(c.buf) > 0 && c.timer == nil {
		c.timer = time.AfterFunc(logChunkEvery, c.flush)
	}
	return len(p), nil
}

func (c *logChunker) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if len(c.buf) > 0 {
		c.sendLocked(c.buf)
		c.buf = nil
	}
}

// Close sends what is left; later writes are dropped.
func (c *logChunker) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if len(c.buf) > 0 {
		c.sendLocked(c.buf)
		c.buf = nil
	}
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *logChunker) sendLocked(b []byte) {
	c.seq++
	h := nats.Header{}
	h.Set(protocol.HeaderJobID, c.jobKey)
	h.Set(protocol.HeaderRunID, c.runID)
	h.Set(protocol.HeaderLogSeq, strconv.FormatUint(c.seq, 10))
	data := append([]byte(nil), b...)
	if err := c.pub.Publish(context.Background(), c.subject, data, h); err != nil {
		// The live view only: host.log on disk has every line.
		c.log.Debug("publish log chunk", zap.Uint64("seq", c.seq), zap.Error(err))
	}
}
