package web

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"jerichoci/model"
)

// A push is a group of lanes enqueued together (a job spec's `group`);
// each lane is one daemon job, whose attempts (deliveries handed back to
// the queue and taken again) are runs of their own. The page shows a push
// as pika's CI page does: one line saying how it went, then each lane.

// laneRun is one lane of a push, or one run outside any push: the job's
// newest attempt and the ones before it.
type laneRun struct {
	Key      string     // the daemon job id; the run id of a run without one
	Lane     string     // the lane title (the spec's lane, else the target id)
	Attempts []runEntry // oldest first; the last is the job's run
}

// final is the lane's run: its newest attempt.
func (l laneRun) final() runEntry { return l.Attempts[len(l.Attempts)-1] }

// push is the runs of one group.
type push struct {
	ID     string
	Number uint64   // the work stream's sequence of its first job
	Lanes  []string // every lane the group names, in order
	JobIDs []string // each lane's job id, when the group names them
	Runs   []laneRun
}

// item is one entry of the runs list: a push, or a lane run outside any.
type item struct {
	Push *push
	Run  *laneRun
	rank int // the place of its newest run among the runs, newest first
}

// laneTitle is the title of a run's lane: the job spec's lane, else the
// target id, else the run's title.
func laneTitle(e runEntry) string {
	if e.Job != nil && e.Job.Lane != "" {
		return e.Job.Lane
	}
	if e.Err == nil {
		if id := model.Value(e.Rec.TargetID); id != "" {
			return id
		}
		return title(e.Rec)
	}
	return e.ID
}

// collect sorts runs (newest first) into pushes and lone lane runs, each
// daemon job's attempts together, newest first.
func collect(entries []runEntry) []item {
	jobs := map[string]*laneRun{}
	rank := map[*laneRun]int{}
	var order []*laneRun
	for i := len(entries) - 1; i >= 0; i-- { // oldest first: attempts in order
		e := entries[i]
		key := "run:" + e.ID
		if e.Job != nil {
			key = e.Job.JobID
		}
		l := jobs[key]
		if l == nil {
			l = &laneRun{Key: key, Lane: laneTitle(e)}
			if e.Job == nil {
				l.Key = e.ID
			}
			jobs[key] = l
			order = append(order, l)
		}
		l.Attempts = append(l.Attempts, e)
		rank[l] = i
	}
	for _, l := range order {
		sort.SliceStable(l.Attempts, func(i, j int) bool { return delivery(l.Attempts[i]) < delivery(l.Attempts[j]) })
	}
	pushes := map[string]*push{}
	pushAt := map[string]int{}
	var items []item
	for _, l := range order {
		f := l.final()
		if f.Job == nil || f.Job.Group == nil {
			items = append(items, item{Run: l, rank: rank[l]})
			continue
		}
		g := f.Job.Group
		p := pushes[g.ID]
		if p == nil {
			p = &push{ID: g.ID, Lanes: append([]string(nil), g.Lanes...)}
			if len(g.JobIDs) == len(g.Lanes) {
				p.JobIDs = append([]string(nil), g.JobIDs...)
			}
			pushes[g.ID] = p
			pushAt[g.ID] = len(items)
			items = append(items, item{Push: p, rank: rank[l]})
		}
		if r := rank[l]; r < items[pushAt[g.ID]].rank {
			items[pushAt[g.ID]].rank = r
		}
		p.Runs = append(p.Runs, *l)
		if n := f.Job.StreamSeq; n > 0 && (p.Number == 0 || n < p.Number) {
			p.Number = n
		}
	}
	for _, it := range items {
		if it.Push != nil {
			it.Push.sortRuns()
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].rank < items[j].rank })
	return items
}

func delivery(e runEntry) uint64 {
	if e.Job == nil {
		return 0
	}
	return e.Job.Delivery
}

// sortRuns orders a push's lanes as its group names them, others after.
func (p *push) sortRuns() {
	pos := map[string]int{}
	for i, l := range p.Lanes {
		if _, ok := pos[l]; !ok {
			pos[l] = i
		}
	}
	rank := func(l laneRun) int {
		if i, ok := pos[l.Lane]; ok {
			return i
		}
		return len(p.Lanes)
	}
	sort.SliceStable(p.Runs, func(i, j int) bool { return rank(p.Runs[i]) < rank(p.Runs[j]) })
}

// pendingLane is a lane the group names that has no run yet, with its
// job id when the group names it.
type pendingLane struct {
	Lane, JobID string
}

// pendingLanes are the lanes the group names that have no run yet: by
// job id when the group names the jobs, else by title.
func (p *push) pendingLanes() []pendingLane {
	have := map[string]bool{}
	for _, l := range p.Runs {
		have[l.Lane] = true
		if p.JobIDs != nil {
			have["job:"+l.Key] = true
		}
	}
	var out []pendingLane
	for i, l := range p.Lanes {
		if p.JobIDs != nil {
			if id := p.JobIDs[i]; !have["job:"+id] {
				out = append(out, pendingLane{Lane: l, JobID: id})
				have["job:"+id] = true
			}
			continue
		}
		if !have[l] {
			out = append(out, pendingLane{Lane: l})
			have[l] = true
		}
	}
	return out
}

// LaneStatus is one lane of a push as the JSON view and the page show it.
type LaneStatus struct {
	Lane     string `json:"lane"`
	Status   string `json:"status"` // a run status, "queued" before it starts, "not_queued" when it never was
	Why      *Why   `json:"why,omitempty"`
	RunID    string `json:"run_id,omitempty"`
	JobID    string `json:"job_id,omitempty"`
	Attempts int    `json:"attempts"`
	// EarlierRuns are the run ids of the attempts handed back before the
	// lane's run, oldest first.
	EarlierRuns []string `json:"earlier_runs,omitempty"`
	GitHead     string   `json:"git_head,omitempty"`
	QueuedMS    *int64   `json:"queued_ms,omitempty"`
	RanMS       *int64   `json:"ran_ms,omitempty"`
	Duration    string   `json:"-"`
	Description string   `json:"description,omitempty"`
}

// PushStatus is a push: GET /api/pushes/{push}, and each push of
// GET /api/pushes.
type PushStatus struct {
	Push     string       `json:"push"`
	Number   uint64       `json:"number"`
	Status   string       `json:"status"` // running, failed or passed
	Summary  string       `json:"summary"`
	Counts   PushCounts   `json:"counts"`
	GitHead  string       `json:"git_head,omitempty"`
	QueuedAt string       `json:"queued_at,omitempty"`
	Lanes    int          `json:"lane_count"`
	QueuedMS *int64       `json:"queued_ms,omitempty"`
	RanMS    *int64       `json:"ran_ms,omitempty"`
	Runs     []LaneStatus `json:"lanes"`
}

// PushCounts counts a push's lanes by status.
type PushCounts struct {
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Running int `json:"running"`
	Queued  int `json:"queued"`
	Skipped int `json:"skipped"`
	// NotQueued are the lanes whose job the daemon does not know: the
	// push stopped before queuing them.
	NotQueued int `json:"not_queued"`
}

// laneStatus is one lane run's status.
func (s *Server) laneStatus(l laneRun) LaneStatus {
	f := l.final()
	ls := LaneStatus{Lane: l.Lane, RunID: f.ID, Attempts: len(l.Attempts)}
	for _, e := range l.Attempts[:len(l.Attempts)-1] {
		ls.EarlierRuns = append(ls.EarlierRuns, e.ID)
	}
	if f.Job != nil {
		ls.JobID = f.Job.JobID
	}
	if f.Err != nil {
		ls.Status, ls.Why = "error", &Why{Word: "unreadable", Line: f.Err.Error()}
		return ls
	}
	ls.Status = string(f.Rec.Status)
	ls.Why = whyRun(f.Rec, len(l.Attempts)-1)
	ls.GitHead = model.Value(f.Rec.GitHead)
	ls.Description = model.Value(f.Rec.TargetDescription)
	ls.Duration = "–"
	if q, rn, ok := runTimes(f.Rec, f.Job, s.cfg.Now()); ok {
		qm, rm := q.Milliseconds(), rn.Milliseconds()
		ls.QueuedMS, ls.RanMS = &qm, &rm
		ls.Duration = fmtDuration(rn)
	}
	if len(f.Rec.Jobs) == 0 && f.Rec.FinishedAt != nil {
		ls.Duration = "–" // it never ran
	}
	return ls
}

// pushStatus summarises a push the way pika's CI page does.
// v's lookups tell the lanes never queued from the waiting ones.
func (s *Server) pushStatus(v *view, p *push) PushStatus {
	ps := PushStatus{Push: p.ID, Number: p.Number}
	now := s.cfg.Now()
	var from, first, end time.Time
	running := false
	for _, l := range p.Runs {
		ls := s.laneStatus(l)
		ps.Runs = append(ps.Runs, ls)
		switch ls.Status {
		case string(model.StatusPassed):
			ps.Counts.Passed++
		case string(model.StatusRunning):
			ps.Counts.Running++
		case string(model.StatusSkipped):
			ps.Counts.Skipped++
		default:
			ps.Counts.Failed++
		}
		if ps.GitHead == "" {
			ps.GitHead = ls.GitHead
		}
		for _, e := range l.Attempts {
			if e.Err != nil {
				continue
			}
			t := e.Rec.CreatedAt.Time
			if e.Job != nil {
				if q, err := time.Parse(time.RFC3339Nano, e.Job.EnqueuedAt); err == nil && q.Before(t) {
					t = q
				}
			}
			if from.IsZero() || t.Before(from) {
				from = t
			}
		}
		if f := l.final(); f.Err == nil {
			for _, j := range f.Rec.Jobs {
				if j.Status != model.StatusSkipped && (first.IsZero() || j.StartedAt.Before(first)) {
					first = j.StartedAt.Time
				}
			}
			if f.Rec.FinishedAt == nil {
				running = true
			} else {
				end = maxTime(end, f.Rec.FinishedAt.Time)
			}
		}
	}
	for _, pl := range p.pendingLanes() {
		if s.neverQueued(v, pl.JobID) {
			ps.Runs = append(ps.Runs, LaneStatus{Lane: pl.Lane, Status: statusNotQueued, JobID: pl.JobID, Duration: "–",
				Why: &Why{Word: whyNotQueued, Line: "never queued: the push stopped before this lane (the daemon does not know job " + pl.JobID + ")"}})
			ps.Counts.NotQueued++
			continue
		}
		ps.Runs = append(ps.Runs, LaneStatus{Lane: pl.Lane, Status: "queued", JobID: pl.JobID, Duration: "–"})
		ps.Counts.Queued++
	}
	ps.Lanes = len(ps.Runs)
	switch {
	case ps.Counts.Running > 0 || ps.Counts.Queued > 0:
		ps.Status = string(model.StatusRunning)
		end = now
	case ps.Counts.Failed > 0 || ps.Counts.NotQueued > 0: // a lane never queued never runs
		ps.Status = string(model.StatusFailed)
	default:
		ps.Status = string(model.StatusPassed)
	}
	if running {
		end = now
	}
	if !from.IsZero() {
		ps.QueuedAt = fmtTime(from)
		if first.IsZero() {
			first = end
		}
		if q, r := first.Sub(from), end.Sub(first); q >= 0 && r >= 0 {
			qm, rm := q.Milliseconds(), r.Milliseconds()
			ps.QueuedMS, ps.RanMS = &qm, &rm
		}
	}
	ps.Summary = pushSummary(ps)
	return ps
}

// statusNotQueued is the status of a lane whose job was never queued.
const statusNotQueued = "not_queued"

// pushSummary is the line under a push's title: "failed · 9 passed 1
// failed · head 4eef499 · queued 2026-… · 10 lane(s) · queued 8s · ran
// 2m43s".
func pushSummary(ps PushStatus) string {
	parts := []string{ps.Status, countsText(ps.Counts)}
	if ps.GitHead != "" {
		parts = append(parts, "head "+short7(ps.GitHead))
	}
	if ps.QueuedAt != "" {
		parts = append(parts, "queued "+ps.QueuedAt)
	}
	parts = append(parts, fmt.Sprintf("%d lane(s)", ps.Lanes))
	if ps.QueuedMS != nil {
		parts = append(parts, "queued "+fmtDuration(time.Duration(*ps.QueuedMS)*time.Millisecond),
			"ran "+fmtDuration(time.Duration(*ps.RanMS)*time.Millisecond))
	}
	return strings.Join(parts, " · ")
}

func countsText(c PushCounts) string {
	s := fmt.Sprintf("%d passed", c.Passed)
	for _, x := range []struct {
		n    int
		word string
	}{{c.Failed, "failed"}, {c.Running, "running"}, {c.Queued, "queued"}, {c.NotQueued, "not queued"}, {c.Skipped, "skipped"}} {
		if x.n > 0 {
			s += fmt.Sprintf(" %d %s", x.n, x.word)
		}
	}
	return s
}

// short7 is a commit id as pika's page shows it: 7 characters.
func short7(h string) string {
	if len(h) > 7 {
		return h[:7]
	}
	return h
}
