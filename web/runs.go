package web

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

// runEntry is one run directory: its record, or why it has none.
type runEntry struct {
	ID  string // the directory name
	Rec model.RunRecord
	Err error // run.json does not decode
	Job *protocol.JobFile
}

// JobCounts counts a run's jobs by status.
type JobCounts struct {
	Total   int `json:"total"`
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Running int `json:"running"`
}

// RunSummary is one run in the runs list (GET /api/runs).
type RunSummary struct {
	RunID             string     `json:"run_id"`
	Status            string     `json:"status,omitempty"`
	TargetID          *string    `json:"target_id,omitempty"`
	TargetDescription *string    `json:"target_description,omitempty"`
	CreatedAt         string     `json:"created_at,omitempty"`
	FinishedAt        *string    `json:"finished_at,omitempty"`
	GitHead           *string    `json:"git_head,omitempty"`
	GitDirty          *bool      `json:"git_dirty,omitempty"`
	Message           *string    `json:"message,omitempty"`
	Jobs              *JobCounts `json:"jobs,omitempty"`
	// QueuedMS is from the job's publication (a daemon run; else the
	// run's creation) to its first job's start (or to its end when no job
	// started); RanMS from there to its end (now while it runs). Absent
	// when the record cannot tell.
	QueuedMS *int64 `json:"queued_ms,omitempty"`
	RanMS    *int64 `json:"ran_ms,omitempty"`
	// JobID and Worker come from the daemon's jerichoci-job.json; absent
	// for `jerichoci run` runs and the original's.
	JobID      string `json:"job_id,omitempty"`
	Worker     string `json:"worker,omitempty"`
	Requester  string `json:"requester,omitempty"`
	EnqueuedAt string `json:"enqueued_at,omitempty"`
	// Error says why run.json does not decode; the other fields are then
	// absent.
	Error string `json:"error,omitempty"`
}

// loadRuns reads every run directory that has a run.json, newest first:
// by created_at, a run that does not decode by the time its id names.
func (s *Server) loadRuns() ([]runEntry, error) {
	ids, err := s.store.RunIDs()
	if err != nil {
		return nil, err
	}
	var out []runEntry
	for _, id := range ids {
		if !validName(id) {
			continue
		}
		e, ok := s.loadRun(id)
		if ok {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ti, tj := out[i].sortTime(), out[j].sortTime()
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// loadRun reads one run directory; ok is false when it has no run.json.
func (s *Server) loadRun(id string) (e runEntry, ok bool) {
	e.ID = id
	rec, err := run.LoadRun(s.cfg.StateRoot, id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return e, false
	case err != nil:
		e.Err = errors.New(strings.ReplaceAll(err.Error(), s.store.RunsDir()+string(filepath.Separator), "runs/"))
		return e, true
	}
	e.Rec = rec
	var jf protocol.JobFile
	if err := s.store.ReadRunFile(id, protocol.JobFileName, &jf); err == nil && protocol.ValidJobKey(jf.JobID) {
		e.Job = &jf
	}
	return e, true
}

func (e runEntry) sortTime() time.Time {
	if e.Err == nil {
		return e.Rec.CreatedAt.Time
	}
	if len(e.ID) >= 16 {
		if t, err := time.Parse("20060102T150405Z", e.ID[:16]); err == nil {
			return t
		}
	}
	return time.Time{}
}

func countJobs(jobs []model.JobRecord) JobCounts {
	c := JobCounts{Total: len(jobs)}
	for _, j := range jobs {
		switch j.Status {
		case model.StatusPassed:
			c.Passed++
		case model.StatusFailed:
			c.Failed++
		case model.StatusSkipped:
			c.Skipped++
		case model.StatusRunning:
			c.Running++
		}
	}
	return c
}

// runTimes are a run's queued and ran durations (see RunSummary), ok
// false when the record's times do not allow them.
func runTimes(r model.RunRecord, jf *protocol.JobFile, now time.Time) (queued, ran time.Duration, ok bool) {
	end := now
	if r.FinishedAt != nil {
		end = r.FinishedAt.Time
	}
	var first time.Time
	for _, j := range r.Jobs {
		if j.Status == model.StatusSkipped {
			continue // never ran: skipped after a failure or a cancel
		}
		if first.IsZero() || j.StartedAt.Before(first) {
			first = j.StartedAt.Time
		}
	}
	if first.IsZero() {
		first = end
	}
	from := r.CreatedAt.Time
	if jf != nil && jf.EnqueuedAt != "" {
		if t, err := time.Parse(time.RFC3339Nano, jf.EnqueuedAt); err == nil && !t.After(from) {
			from = t
		}
	}
	queued, ran = first.Sub(from), end.Sub(first)
	if queued < 0 || ran < 0 {
		return 0, 0, false
	}
	return queued, ran, true
}

func (s *Server) summary(e runEntry) RunSummary {
	if e.Err != nil {
		return RunSummary{RunID: e.ID, Error: e.Err.Error()}
	}
	r := e.Rec
	c := countJobs(r.Jobs)
	sum := RunSummary{RunID: e.ID, Status: string(r.Status), TargetID: r.TargetID, TargetDescription: r.TargetDescription,
		CreatedAt: r.CreatedAt.String(), GitHead: r.GitHead, GitDirty: r.GitDirty, Message: r.Message, Jobs: &c}
	if r.FinishedAt != nil {
		f := r.FinishedAt.String()
		sum.FinishedAt = &f
	}
	if q, rn, ok := runTimes(r, e.Job, s.cfg.Now()); ok {
		qm, rm := q.Milliseconds(), rn.Milliseconds()
		sum.QueuedMS, sum.RanMS = &qm, &rm
	}
	if e.Job != nil {
		sum.JobID, sum.Worker, sum.Requester, sum.EnqueuedAt = e.Job.JobID, e.Job.Worker, e.Job.Requester, e.Job.EnqueuedAt
	}
	return sum
}

// fmtDuration renders d as a CI page does: 850ms, 12.3s, 4m05s, 2h03m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "–"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func fmtMS(ms uint64) string { return fmtDuration(time.Duration(ms) * time.Millisecond) }

// shortHead is the first 10 characters of a commit id.
func shortHead(h *string) string {
	if h == nil {
		return ""
	}
	if len(*h) > 10 {
		return (*h)[:10]
	}
	return *h
}

// title is a run's lane title: its target description, else its target id.
func title(r model.RunRecord) string {
	if d := model.Value(r.TargetDescription); d != "" {
		return d
	}
	if id := model.Value(r.TargetID); id != "" {
		return id
	}
	return "(no target)"
}
