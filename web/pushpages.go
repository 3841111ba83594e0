package web

import (
	"fmt"
	"html"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"jerichoci/model"
)

// listFilter is the runs list's query: ?status=, ?lane=, ?head=.
type listFilter struct {
	Status string // a status (running, passed, failed, skipped, queued, not_queued)
	Lane   string // a lane title, exactly
	Head   string // a prefix of the git head
}

func (f listFilter) Active() bool { return f.Status != "" || f.Lane != "" || f.Head != "" }

var filterStatuses = []string{"running", "passed", "failed", "skipped", "queued", statusNotQueued}

// filterParam reads the filters; an unknown status is an error naming it.
func filterParam(r *http.Request) (listFilter, error) {
	q := r.URL.Query()
	f := listFilter{Status: q.Get("status"), Lane: q.Get("lane"), Head: strings.ToLower(q.Get("head"))}
	if f.Status != "" {
		ok := false
		for _, s := range filterStatuses {
			ok = ok || s == f.Status
		}
		if !ok {
			return f, fmt.Errorf("query parameter `status` %q: expected one of %s", f.Status, strings.Join(filterStatuses, ", "))
		}
	}
	return f, nil
}

func (f listFilter) keep(ls LaneStatus) bool {
	return (f.Status == "" || ls.Status == f.Status) && (f.Lane == "" || ls.Lane == f.Lane) &&
		(f.Head == "" || strings.HasPrefix(ls.GitHead, f.Head))
}

// listItem is a push (its summary and its lanes) or a lone run.
type listItem struct {
	Push   *PushStatus
	Latest bool // the newest push shown
	Rows   []runRow
}

// items builds the runs list's entries, filtered; v looks up the lanes
// not started.
func (s *Server) items(v *view, entries []runEntry, f listFilter) []listItem {
	var out []listItem
	latest := true
	for _, it := range collect(entries) {
		if it.Push != nil {
			ps := s.pushStatus(v, it.Push)
			li := listItem{Push: &ps}
			byLane := map[string]laneRun{}
			for _, l := range it.Push.Runs {
				byLane[l.Lane] = l
			}
			for _, ls := range ps.Runs {
				if !f.keep(ls) {
					continue
				}
				if l, ok := byLane[ls.Lane]; ok {
					row := s.laneRow(l, ls)
					if row.Err == "" {
						row.Title = l.Lane // a push shows lanes by title (a target by its id)
					}
					li.Rows = append(li.Rows, row)
				} else {
					li.Rows = append(li.Rows, pendingRow(ls))
				}
			}
			if len(li.Rows) == 0 {
				continue
			}
			li.Latest, latest = latest, false
			out = append(out, li)
			continue
		}
		ls := s.laneStatus(*it.Run)
		if !f.keep(ls) {
			continue
		}
		out = append(out, listItem{Rows: []runRow{s.laneRow(*it.Run, ls)}})
	}
	return out
}

// pendingRow is the row of a lane that has no run: queued, or never
// queued (saying why).
func pendingRow(ls LaneStatus) runRow {
	row := runRow{Status: ls.Status, Title: ls.Lane, Queued: "–", Ran: "–", Jobs: "not started", Why: ls.Why}
	if ls.Status == statusNotQueued {
		row.Jobs = "never queued"
	}
	return row
}

// laneRow is the runs list's row of a lane run: its run's row, titled by
// its lane, saying why it failed and how often it was handed back.
func (s *Server) laneRow(l laneRun, ls LaneStatus) runRow {
	row := s.row(l.final())
	if row.Err != "" {
		return row
	}
	if e := l.final(); e.Job != nil && e.Job.Lane != "" {
		row.Title = e.Job.Lane
	}
	row.Why = ls.Why
	row.Attempts = len(l.Attempts)
	if ls.Duration == "–" {
		row.Ran = "–"
	}
	return row
}

// pushOf finds the push {push}; ok false when the request is answered.
func (s *Server) pushOf(w http.ResponseWriter, r *http.Request, asJSON bool) (*push, bool) {
	id := r.PathValue("push")
	fail := func(code int, msg string) {
		if asJSON {
			jsonError(w, code, msg)
		} else {
			s.render(w, code, "error.html", map[string]string{"Title": "push " + id, "Message": msg})
		}
	}
	if !validName(id) {
		fail(http.StatusBadRequest, fmt.Sprintf("push id %q: expected 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", id))
		return nil, false
	}
	entries, err := s.loadRuns()
	if err != nil {
		s.cfg.Log.Error("list runs", zap.Error(err))
		fail(http.StatusInternalServerError, err.Error())
		return nil, false
	}
	for _, it := range collect(entries) {
		if it.Push != nil && it.Push.ID == id {
			return it.Push, true
		}
	}
	fail(http.StatusNotFound, "no push "+id+" under "+s.store.RunsDir())
	return nil, false
}

// pushPage is GET /pushes/{push}: the push's line, then each lane.
func (s *Server) pushPage(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pushOf(w, r, false)
	if !ok {
		return
	}
	v, end := s.newView(r.Context())
	defer end()
	ps := s.pushStatus(v, p)
	data := struct {
		P       PushStatus
		Rows    []runRow
		Refresh int
	}{P: ps}
	// The lanes not started are rows of items too, after the runs.
	data.Rows = s.items(v, pushEntries(p), listFilter{})[0].Rows
	if ps.Status == string(model.StatusRunning) {
		data.Refresh = refreshSecs
	}
	s.render(w, http.StatusOK, "push.html", data)
}

// pushEntries are a push's runs, every attempt, newest first.
func pushEntries(p *push) []runEntry {
	var out []runEntry
	for i := len(p.Runs) - 1; i >= 0; i-- {
		a := p.Runs[i].Attempts
		for j := len(a) - 1; j >= 0; j-- {
			out = append(out, a[j])
		}
	}
	return out
}

// apiPush is GET /api/pushes/{push}.
func (s *Server) apiPush(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pushOf(w, r, true)
	if !ok {
		return
	}
	v, end := s.newView(r.Context())
	defer end()
	writeJSON(w, http.StatusOK, s.pushStatus(v, p))
}

// apiPushes is GET /api/pushes?status=&lane=&head=: the pushes, newest
// first, each with the lanes the filters keep.
func (s *Server) apiPushes(w http.ResponseWriter, r *http.Request) {
	f, err := filterParam(r)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	entries, err := s.loadRuns()
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := struct {
		Pushes []PushStatus `json:"pushes"`
	}{Pushes: []PushStatus{}}
	v, end := s.newView(r.Context())
	defer end()
	for _, li := range s.items(v, entries, f) {
		if li.Push == nil {
			continue
		}
		ps := *li.Push
		var kept []LaneStatus
		for _, ls := range ps.Runs {
			if f.keep(ls) {
				kept = append(kept, ls)
			}
		}
		ps.Runs = kept
		out.Pushes = append(out.Pushes, ps)
	}
	writeJSON(w, http.StatusOK, out)
}

// pushBadge is GET /pushes/{push}/badge.svg: "#186 failed".
func (s *Server) pushBadge(w http.ResponseWriter, r *http.Request) {
	p, ok := s.pushOf(w, r, true)
	if !ok {
		return
	}
	v, end := s.newView(r.Context())
	defer end()
	ps := s.pushStatus(v, p)
	writeBadge(w, "jerichoci", fmt.Sprintf("#%d %s", ps.Number, ps.Status), ps.Status)
}

// laneLatest is the newest run of a lane, optionally at a head; ok false
// when there is none.
func (s *Server) laneLatest(lane, head string) (LaneStatus, bool, error) {
	entries, err := s.loadRuns()
	if err != nil {
		return LaneStatus{}, false, err
	}
	f := listFilter{Lane: lane, Head: strings.ToLower(head)}
	for _, it := range collect(entries) {
		var runs []laneRun
		if it.Push != nil {
			runs = it.Push.Runs
		} else {
			runs = []laneRun{*it.Run}
		}
		for _, l := range runs {
			if ls := s.laneStatus(l); f.keep(ls) {
				return ls, true, nil
			}
		}
	}
	return LaneStatus{}, false, nil
}

// apiLane is GET /api/lanes/{lane}?head=: the lane's newest run, small.
func (s *Server) apiLane(w http.ResponseWriter, r *http.Request) {
	lane := r.PathValue("lane")
	if !validName(lane) {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("lane %q: expected a lane title of letters, digits, '.', '_' or '-'", lane))
		return
	}
	ls, ok, err := s.laneLatest(lane, r.URL.Query().Get("head"))
	switch {
	case err != nil:
		jsonError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		jsonError(w, http.StatusNotFound, "no run of lane "+lane)
	default:
		writeJSON(w, http.StatusOK, ls)
	}
}

// laneBadge is GET /lanes/{lane}/badge.svg?head=: "check-pika-rust | passed".
func (s *Server) laneBadge(w http.ResponseWriter, r *http.Request) {
	lane := r.PathValue("lane")
	if !validName(lane) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("lane %q: expected a lane title of letters, digits, '.', '_' or '-'", lane))
		return
	}
	ls, ok, err := s.laneLatest(lane, r.URL.Query().Get("head"))
	switch {
	case err != nil:
		httpError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		writeBadge(w, lane, "no runs", "none")
	default:
		msg := ls.Status
		if ls.Why != nil {
			msg += ": " + ls.Why.Word
		}
		writeBadge(w, lane, msg, ls.Status)
	}
}

var badgeColors = map[string]string{"passed": "#1a7f37", "failed": "#cf222e", "running": "#0969da", "queued": "#6e7781", statusNotQueued: "#9a6700"}

// writeBadge writes a two-part SVG badge, widths by a fixed advance per
// character (no fonts to measure with on the server).
func writeBadge(w http.ResponseWriter, label, msg, status string) {
	color, ok := badgeColors[status]
	if !ok {
		color = "#8c959f"
	}
	lw, mw := 10+7*len(label), 10+7*len(msg)
	svg := fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s: %s">`+
		`<rect width="%d" height="20" fill="#555"/><rect x="%d" width="%d" height="20" fill="%s"/>`+
		`<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">`+
		`<text x="5" y="14">%s</text><text x="%d" y="14">%s</text></g></svg>`+"\n",
		lw+mw, html.EscapeString(label), html.EscapeString(msg), lw, lw, mw, color,
		html.EscapeString(label), lw+5, html.EscapeString(msg))
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(svg))
}
