package web

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
)

func parseTemplates() *template.Template {
	funcs := template.FuncMap{"dur": fmtDuration, "dec": func(n int) int { return n - 1 }, "status": statusText, "page": func(title string, refresh int) headData { return headData{title, refresh} }}
	return template.Must(template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html"))
}

// statusText is a status as the page writes it: "not queued" for
// not_queued, every other as it is.
func statusText(s string) string { return strings.ReplaceAll(s, "_", " ") }

// headData is the head of a page: its title and, when not 0, the seconds
// after which it reloads itself (a page showing a running run that no
// live log stream keeps up to date).
type headData struct {
	Title   string
	Refresh int
}

// refreshSecs is how often a page of running runs without a live log
// reloads.
const refreshSecs = 3

// runRow is one line of the runs list.
type runRow struct {
	ID      string
	Err     string
	Status  string
	Title   string
	Target  string
	Jobs    string
	Queued  string
	Ran     string
	Head    string
	Dirty   bool
	Created string
	Daemon  string // the daemon job id, short; "" for local runs
	Worker  string
	// Requester is the job spec's requester ("" for local runs and specs
	// without one).
	Requester string
	// Why says why the run failed (nil unless it did); Attempts counts
	// the daemon job's deliveries that made a run (0: not known).
	Why      *Why
	Attempts int
}

func jobsText(c JobCounts) string {
	if c.Total == 0 {
		return "no jobs"
	}
	s := fmt.Sprintf("%d passed", c.Passed)
	if c.Failed > 0 {
		s += fmt.Sprintf(" %d failed", c.Failed)
	}
	if c.Skipped > 0 {
		s += fmt.Sprintf(" %d skipped", c.Skipped)
	}
	if c.Running > 0 {
		s += fmt.Sprintf(" %d running", c.Running)
	}
	return s
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func (s *Server) row(e runEntry) runRow {
	if e.Err != nil {
		return runRow{ID: e.ID, Err: e.Err.Error()}
	}
	r := e.Rec
	row := runRow{ID: e.ID, Status: string(r.Status), Title: title(r), Target: model.Value(r.TargetID),
		Jobs: jobsText(countJobs(r.Jobs)), Head: shortHead(r.GitHead), Dirty: r.GitDirty != nil && *r.GitDirty,
		Created: fmtTime(r.CreatedAt.Time), Queued: "–", Ran: "–"}
	if q, rn, ok := runTimes(r, e.Job, s.cfg.Now()); ok {
		row.Queued, row.Ran = fmtDuration(q), fmtDuration(rn)
	}
	if e.Job != nil {
		row.Daemon, row.Worker, row.Requester = e.Job.JobID, e.Job.Worker, e.Job.Requester
		if len(row.Daemon) > 8 {
			row.Daemon = row.Daemon[:8]
		}
	}
	return row
}

func (s *Server) runsPage(w http.ResponseWriter, r *http.Request) {
	f, ferr := filterParam(r)
	entries, err := s.loadRuns()
	data := struct {
		StateRoot string
		Items     []listItem
		Err       string
		Shown     int
		Total     int
		Refresh   int
		Filter    listFilter
	}{StateRoot: s.cfg.StateRoot, Total: len(entries), Filter: f}
	switch {
	case ferr != nil:
		data.Err = ferr.Error()
	case err != nil:
		data.Err = err.Error()
	}
	if len(entries) > maxLimit {
		entries = entries[:maxLimit]
	}
	data.Shown = len(entries)
	v, end := s.newView(r.Context())
	defer end()
	data.Items = s.items(v, entries, f)
	for _, it := range data.Items {
		for _, row := range it.Rows {
			if row.Status == string(model.StatusRunning) || row.Status == "queued" {
				data.Refresh = refreshSecs
			}
		}
	}
	s.render(w, http.StatusOK, "runs.html", data)
}

// jobView is one job on a run page.
type jobView struct {
	Index       int
	ID          string
	Description string
	Status      string
	Executor    string
	ExitCode    string
	Message     string
	Started     string
	Duration    string
	Prepare     string
	Timeout     string
	Log         logTail
	LogErr      string
	Live        bool
	Phases      []phaseView
	// Why says why the job failed; Open: its log shows unfolded (it
	// failed or runs, or the run has no failed job); Focus: the page
	// opens on it (the run's first failed job).
	Why   *Why
	Open  bool
	Focus bool
}

type phaseView struct {
	Name     string
	Duration string
}

// timeline is the run's prepare nodes and jobs on one time axis.
type timeline struct {
	Span  string
	Ticks []tick
	Rows  []tlRow
}

type tick struct{ Left, Label string }

type tlRow struct {
	Label string
	Kind  string // prepare or job
	Bars  []tlBar
}

type tlBar struct {
	Left, Width string // percent of the span
	Class       string
	Title       string
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run")
	if !validName(id) {
		s.render(w, http.StatusBadRequest, "error.html", map[string]string{"Title": "bad run id", "Message": badRunID(id)})
		return
	}
	e, ok := s.loadRun(id)
	if !ok {
		s.render(w, http.StatusNotFound, "error.html", map[string]string{"Title": "no run " + id,
			"Message": "there is no run " + id + " under " + s.store.RunsDir()})
		return
	}
	if e.Err != nil {
		s.render(w, http.StatusInternalServerError, "error.html", map[string]string{"Title": "run " + id, "Message": e.Err.Error()})
		return
	}
	rec := e.Rec
	data := struct {
		ID       string
		Rec      model.RunRecord
		Row      runRow
		Title    string
		Head     string
		Finished string
		Message  string
		Jobs     []jobView
		Timeline timeline
		Job      *jobFileView
		Live     bool
		Refresh  int
		Lane     laneContext
	}{ID: id, Rec: rec, Row: s.row(e), Title: title(rec), Head: model.Value(rec.GitHead), Message: model.Value(rec.Message)}
	data.Lane = s.laneContext(e)
	if e.Job != nil && e.Job.Lane != "" {
		data.Title = e.Job.Lane
	}
	anyFailed := false
	for _, j := range rec.Jobs {
		anyFailed = anyFailed || j.Status == model.StatusFailed
	}
	if rec.FinishedAt != nil {
		data.Finished = fmtTime(rec.FinishedAt.Time)
	}
	if e.Job != nil {
		data.Job = &jobFileView{JobID: e.Job.JobID, Worker: e.Job.Worker, Delivery: e.Job.Delivery,
			Requester: e.Job.Requester, EnqueuedAt: e.Job.EnqueuedAt}
		if t, err := time.Parse(time.RFC3339Nano, e.Job.EnqueuedAt); err == nil {
			data.Job.EnqueuedAt = fmtTime(t)
		}
	}
	now := s.cfg.Now()
	focused := false
	for i, j := range rec.Jobs {
		v := jobView{Index: i, ID: j.ID, Description: j.Description, Status: string(j.Status), Executor: j.Executor,
			Message: model.Value(j.Message), Started: fmtTime(j.StartedAt.Time), Live: live(rec, j), Timeout: fmtDuration(time.Duration(j.TimeoutSecs) * time.Second)}
		if j.ExitCode != nil {
			v.ExitCode = strconv.Itoa(int(*j.ExitCode))
		}
		switch {
		case j.FinishedAt != nil:
			v.Duration = fmtDuration(j.FinishedAt.Sub(j.StartedAt.Time))
		case v.Live:
			v.Duration = fmtDuration(now.Sub(j.StartedAt.Time)) + " so far"
		}
		if j.PreExecutionPrepareDurationMS != nil {
			v.Prepare = fmtMS(*j.PreExecutionPrepareDurationMS)
		}
		if x := j.RemoteLinuxVMExecution; x != nil {
			for _, p := range x.Phases {
				v.Phases = append(v.Phases, phaseView{Name: string(p.Phase), Duration: fmtMS(p.DurationMS)})
			}
		}
		tail, err := readLogTail(s.store.HostLogPath(id, j.ID), maxPageLog)
		if err != nil {
			v.LogErr = err.Error()
		}
		v.Log = tail
		v.Why = whyJob(j)
		v.Open = !anyFailed || j.Status == model.StatusFailed || j.Status == model.StatusRunning
		if j.Status == model.StatusFailed && !focused {
			v.Focus, focused = true, true
		}
		data.Live = data.Live || v.Live
		data.Jobs = append(data.Jobs, v)
	}
	data.Timeline = makeTimeline(rec, now)
	if rec.Status == model.StatusRunning && !data.Live {
		// Between jobs (prepare nodes, the next job not started): no
		// stream to follow, so the page looks again.
		data.Refresh = refreshSecs
	}
	s.render(w, http.StatusOK, "run.html", data)
}

type jobFileView struct {
	JobID      string
	Worker     string
	Delivery   uint64
	Requester  string
	EnqueuedAt string
}

// makeTimeline places every prepare node, job and phase on the axis from
// the run's creation to its end (now while it runs).
func makeTimeline(rec model.RunRecord, now time.Time) timeline {
	start := rec.CreatedAt.Time
	end := now
	if rec.FinishedAt != nil {
		end = rec.FinishedAt.Time
	}
	// Records of other writers may hold times outside the run's.
	for _, p := range rec.PrepareTimings {
		start, end = minTime(start, p.StartedAt.Time), maxTime(end, p.FinishedAt.Time)
	}
	for _, j := range rec.Jobs {
		start = minTime(start, j.StartedAt.Time)
		if j.FinishedAt != nil {
			end = maxTime(end, j.FinishedAt.Time)
		}
	}
	span := end.Sub(start)
	tl := timeline{Span: fmtDuration(span)}
	if span <= 0 {
		span = time.Millisecond
	}
	pct := func(t time.Time) float64 { return float64(t.Sub(start)) / float64(span) * 100 }
	bar := func(from, to time.Time, class, title string) tlBar {
		l, r := pct(from), pct(to)
		w := r - l
		if w < 0.4 { // visible however short
			w = 0.4
		}
		if l+w > 100 {
			l = 100 - w
		}
		return tlBar{Left: fmt.Sprintf("%.3f", l), Width: fmt.Sprintf("%.3f", w), Class: class, Title: title}
	}
	for i := 0; i <= 4; i++ {
		tl.Ticks = append(tl.Ticks, tick{Left: fmt.Sprintf("%d", i*25), Label: fmtDuration(span * time.Duration(i) / 4)})
	}
	for _, p := range rec.PrepareTimings {
		tl.Rows = append(tl.Rows, tlRow{Label: p.NodeID, Kind: "prepare", Bars: []tlBar{
			bar(p.StartedAt.Time, p.FinishedAt.Time, "prepare", fmt.Sprintf("%s: %s", p.NodeID, fmtMS(p.DurationMS)))}})
	}
	for _, j := range rec.Jobs {
		jend := now
		if j.FinishedAt != nil {
			jend = j.FinishedAt.Time
		} else if rec.FinishedAt != nil {
			jend = rec.FinishedAt.Time
		}
		row := tlRow{Label: j.ID, Kind: "job", Bars: []tlBar{
			bar(j.StartedAt.Time, jend, "job st-"+string(j.Status), fmt.Sprintf("%s: %s, %s", j.ID, j.Status, fmtDuration(jend.Sub(j.StartedAt.Time))))}}
		if x := j.RemoteLinuxVMExecution; x != nil {
			for _, p := range x.Phases {
				row.Bars = append(row.Bars, bar(p.StartedAt.Time, p.FinishedAt.Time, "phase ph-"+string(p.Phase),
					fmt.Sprintf("%s: %s", p.Phase, fmtMS(p.DurationMS))))
			}
		}
		tl.Rows = append(tl.Rows, row)
	}
	return tl
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// render executes a template into a buffer first: a template error is a
// 500, never half a page.
func (s *Server) render(w http.ResponseWriter, code int, name string, data any) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		s.cfg.Log.Error("render page", zap.String("template", name), zap.Error(err))
		httpError(w, http.StatusInternalServerError, "render "+name+": "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}
