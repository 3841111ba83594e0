package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

const (
	// readBlock is what a stream reads from host.log at a time.
	readBlock = 32 << 10
	// natsLag: a stream that follows NATS but has not got, this long
	// after, the bytes host.log had, tails the file instead.
	natsLag = 2 * time.Second
	// endGrace is how long a finished job's last chunks may take on NATS
	// before the rest is read from host.log.
	endGrace = time.Second
	// keepAlive is the period of the stream's comment lines.
	keepAlive = 15 * time.Second
	// chunkQueue bounds the chunks a stream holds (64 KiB at most each);
	// a client too slow for them gets the rest from host.log.
	chunkQueue = 16
)

// jobLogStream serves a job's host.log from ?offset= (or the
// Last-Event-ID of a reconnecting EventSource) as server-sent events until
// the job has finished:
//
//	id: <offset after this text>
//	data: {"text":"…"}
//
// then one `event: end` with the job's {"status","exit_code","message"}
// and "duration" (as the page shows it).
func (s *Server) jobLogStream(w http.ResponseWriter, r *http.Request) {
	e, job, ok := s.jobOf(w, r)
	if !ok {
		return
	}
	offset, raw, param := int64(0), r.URL.Query().Get("offset"), "offset"
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		raw, param = v, "Last-Event-ID"
	}
	if raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("%s %q: expected a byte offset, an integer >= 0", param, raw))
			return
		}
		offset = n
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many live log streams (%d); try again later", cap(s.slots)))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopAfter := context.AfterFunc(s.ctx, cancel)
	defer stopAfter()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	st := &logStream{s: s, w: w, rc: http.NewResponseController(w), runID: e.ID, job: job.ID,
		path: s.store.HostLogPath(e.ID, job.ID), pos: offset, log: s.cfg.Log.With(zap.String("run_id", e.ID), zap.String("job", job.ID))}
	if !live(e.Rec, job) {
		st.readDisk()
		st.end(job)
		return
	}
	if err := st.flush(); err != nil {
		return
	}
	jobID := ""
	if e.Job != nil {
		jobID = e.Job.JobID
	}
	if err := st.follow(ctx, jobID); err != nil && !errors.Is(err, context.Canceled) {
		st.log.Debug("live log stream ended", zap.Error(err))
	}
}

// logStream is one client's stream of one job's host.log.
type logStream struct {
	s     *Server
	w     io.Writer
	rc    *http.ResponseController
	runID string
	job   string
	path  string
	log   *zap.Logger

	pos  int64  // the next byte of host.log wanted
	held []byte // read but not sent: the start of a UTF-8 sequence
	err  error  // the first write error: the client is gone
}

// follow streams until the job finishes: from NATS when there is a
// follower and a daemon job, else (or when NATS falls behind, skips a
// chunk or fails) by tailing host.log.
func (st *logStream) follow(ctx context.Context, jobID string) error {
	var chunks chan protocol.LogChunk
	var dropped atomic.Bool
	stop := func() {}
	defer func() { stop() }()
	const fallback = "live log stream tails host.log instead of NATS"
	if f := st.s.cfg.Logs; f == nil && jobID != "" {
		st.log.Info(fallback, zap.String("why", "no NATS client"))
	} else if f != nil && jobID != "" {
		ch := make(chan protocol.LogChunk, chunkQueue)
		subjectJob := protocol.SubjectJob(st.job)
		stopFollow, err := f.FollowLogs(ctx, jobID, true, func(c protocol.LogChunk) {
			if c.RunID != st.runID || c.Job != subjectJob {
				return
			}
			select {
			case ch <- c:
			default: // the queue is full: the rest comes from host.log
				dropped.Store(true)
			}
		})
		if err != nil {
			st.log.Warn(fallback, zap.Error(err))
		} else {
			chunks, stop = ch, stopFollow
		}
	}
	toDisk := func(why string) {
		st.log.Info(fallback, zap.String("why", why))
		stop()
		stop, chunks = func() {}, nil
	}
	var (
		natsPos  int64  // bytes of host.log the chunks so far hold
		lastSeq  uint64 // the last chunk's
		markTime = time.Now()
		markSize = st.size()
		final    *model.JobRecord
		doneAt   time.Time
	)
	tick := time.NewTicker(st.s.cfg.Poll)
	defer tick.Stop()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-chunks:
			if c.Seq != lastSeq+1 {
				toDisk(fmt.Sprintf("chunk %d after chunk %d", c.Seq, lastSeq))
				continue
			}
			lastSeq = c.Seq
			start := natsPos
			natsPos += int64(len(c.Data))
			if start > st.pos {
				toDisk(fmt.Sprintf("chunk %d starts at byte %d, past byte %d", c.Seq, start, st.pos))
				st.readDisk()
				continue
			}
			if natsPos > st.pos {
				st.send(c.Data[st.pos-start:])
			}
		case <-ping.C:
			_, _ = io.WriteString(st.w, ": keep-alive\n\n")
			_ = st.flush()
		case now := <-tick.C:
			if chunks != nil && dropped.Load() {
				toDisk("the client is slower than NATS")
			}
			if chunks == nil {
				st.readDisk()
			} else if now.Sub(markTime) >= natsLag {
				if st.pos < markSize {
					toDisk(fmt.Sprintf("NATS is %s behind host.log", natsLag))
					st.readDisk()
				}
				markTime, markSize = now, st.size()
			}
			if final == nil {
				if j, done := st.done(); done {
					final, doneAt = &j, now
				}
			}
			if final != nil && (chunks == nil || st.size() <= st.pos || now.Sub(doneAt) >= endGrace) {
				st.readDisk()
				st.end(*final)
				return st.err
			}
		}
		if st.err != nil {
			return st.err
		}
	}
}

// done reports whether the job has finished, with its record.
func (st *logStream) done() (model.JobRecord, bool) {
	rec, err := run.LoadRun(st.s.cfg.StateRoot, st.runID)
	if err != nil {
		return model.JobRecord{}, false // being rewritten, or gone: look again
	}
	for _, j := range rec.Jobs {
		if j.ID == st.job {
			return j, !live(rec, j)
		}
	}
	return model.JobRecord{}, false
}

func (st *logStream) size() int64 {
	fi, err := os.Stat(st.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readDisk sends host.log from pos to its end.
func (st *logStream) readDisk() {
	f, err := os.Open(st.path)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, readBlock)
	for st.err == nil {
		n, err := f.ReadAt(buf, st.pos)
		if n > 0 {
			st.send(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// send writes data (host.log from pos) as one event; an unfinished UTF-8
// sequence at its end waits for the next bytes.
func (st *logStream) send(data []byte) {
	if len(data) == 0 {
		return
	}
	st.pos += int64(len(data))
	b := append(st.held, data...)
	n := completeUTF8(b)
	st.held = append([]byte(nil), b[n:]...)
	st.event("", st.pos-int64(len(st.held)), map[string]string{"text": string(b[:n])})
}

// end sends what is held and the job's end.
func (st *logStream) end(j model.JobRecord) {
	if len(st.held) > 0 {
		text := string(st.held)
		st.held = nil
		st.event("", st.pos, map[string]string{"text": text})
	}
	end := struct {
		Status   model.RunStatus `json:"status"`
		ExitCode *int32          `json:"exit_code"`
		Message  *string         `json:"message"`
		Duration string          `json:"duration,omitempty"` // as the page shows it
	}{Status: j.Status, ExitCode: j.ExitCode, Message: j.Message}
	if j.FinishedAt != nil {
		end.Duration = fmtDuration(j.FinishedAt.Sub(j.StartedAt.Time))
	}
	st.event("end", -1, end)
}

func (st *logStream) event(name string, id int64, v any) {
	if st.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		st.err = err
		return
	}
	var sb strings.Builder
	if name != "" {
		sb.WriteString("event: " + name + "\n")
	}
	if id >= 0 {
		sb.WriteString("id: " + strconv.FormatInt(id, 10) + "\n")
	}
	sb.WriteString("data: ")
	sb.Write(b)
	sb.WriteString("\n\n")
	if _, err := io.WriteString(st.w, sb.String()); err != nil {
		st.err = err
		return
	}
	st.err = st.flush()
}

func (st *logStream) flush() error {
	if err := st.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
