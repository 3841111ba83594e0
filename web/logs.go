package web

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"jerichoci/model"
)

// maxPageLog bounds the log a page shows per job: its last 1 MiB
// (host.log repeats at most 1 MiB of output anyway).
const maxPageLog = 1 << 20

// completeUTF8 is the length of the longest prefix of b that does not end
// inside a UTF-8 sequence (invalid bytes count as complete).
func completeUTF8(b []byte) int {
	n := len(b)
	for i := n - 1; i >= 0 && i >= n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return n
			}
			return i
		}
	}
	return n
}

// logTail is the end of a job's host.log as a page shows it.
type logTail struct {
	Text    string
	From    int64 // the byte offset of Text in the file
	To      int64 // the offset after Text: where a live stream goes on
	Missing bool  // no host.log
}

// readLogTail reads the last limit bytes of path, from a line start when it
// cuts, and not ending inside a UTF-8 sequence.
func readLogTail(path string, limit int64) (logTail, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return logTail{Missing: true}, nil
	}
	if err != nil {
		return logTail{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return logTail{}, err
	}
	from := max(0, fi.Size()-limit)
	buf := make([]byte, fi.Size()-from)
	n, err := f.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return logTail{}, err
	}
	buf = buf[:n]
	to := from + int64(completeUTF8(buf))
	buf = buf[:to-from]
	if from > 0 {
		if i := strings.IndexByte(string(buf), '\n'); i >= 0 {
			buf, from = buf[i+1:], from+int64(i)+1
		}
	}
	return logTail{Text: string(buf), From: from, To: to}, nil
}

// jobLog serves a job's whole host.log as text.
func (s *Server) jobLog(w http.ResponseWriter, r *http.Request) {
	e, job, ok := s.jobOf(w, r)
	if !ok {
		return
	}
	f, err := os.Open(s.store.HostLogPath(e.ID, job.ID))
	if err != nil {
		httpError(w, http.StatusNotFound, fmt.Sprintf("job %s of run %s has no host.log", job.ID, e.ID))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.Copy(w, f)
}

// jobOf resolves {run} and {job}, answering the request when it cannot.
func (s *Server) jobOf(w http.ResponseWriter, r *http.Request) (runEntry, model.JobRecord, bool) {
	id, jobID := r.PathValue("run"), r.PathValue("job")
	if !validName(id) {
		httpError(w, http.StatusBadRequest, badRunID(id))
		return runEntry{}, model.JobRecord{}, false
	}
	if !validName(jobID) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("job id %q: expected 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", jobID))
		return runEntry{}, model.JobRecord{}, false
	}
	e, ok := s.loadRun(id)
	if !ok {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no run %s", id))
		return e, model.JobRecord{}, false
	}
	if e.Err != nil {
		httpError(w, http.StatusInternalServerError, e.Err.Error())
		return e, model.JobRecord{}, false
	}
	for _, j := range e.Rec.Jobs {
		if j.ID == jobID {
			return e, j, true
		}
	}
	httpError(w, http.StatusNotFound, fmt.Sprintf("run %s has no job %s", id, jobID))
	return e, model.JobRecord{}, false
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func badRunID(id string) string {
	return fmt.Sprintf("run id %q: expected a run directory name, 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
}

// live reports whether a job's log still grows: it runs, in a run that
// runs (a run closed after its daemon died leaves jobs "running").
func live(rec model.RunRecord, j model.JobRecord) bool {
	return rec.Status == model.StatusRunning && j.Status == model.StatusRunning
}
