package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

// fakeJobs answers lookups from a map (a job not in it is unknown) or
// with err, and counts the lookups per job.
type fakeJobs struct {
	mu     sync.Mutex
	states map[string]protocol.ClaimState
	err    error
	asked  map[string]int
}

func (f *fakeJobs) Lookup(_ context.Context, id string) (protocol.LookupReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.asked == nil {
		f.asked = map[string]int{}
	}
	f.asked[id]++
	if f.err != nil {
		return protocol.LookupReply{}, f.err
	}
	st, ok := f.states[id]
	if !ok {
		st = protocol.ClaimUnknown
	}
	return protocol.LookupReply{JobID: id, State: st}, nil
}

func (f *fakeJobs) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.asked {
		n += c
	}
	return n
}

// laneJobID is the job id of lane i of push seq, as writePush names the
// job of its run i.
func laneJobID(seq uint64, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, i) }

// writePartialPush writes push group (number seq) naming lanes, with
// job_ids when withIDs, of which only the first lane has a run (passed).
func writePartialPush(t *testing.T, root, group string, seq uint64, lanes []string, withIDs bool) {
	t.Helper()
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	writePush(t, root, group, seq, at, lanes, []laneFixture{{lane: lanes[0], runID: fmt.Sprintf("20261125T1200%02dZ-%08x", seq%60, seq),
		status: model.StatusPassed, exit: i32(0), startS: 3, ranS: 10, log: passLog(lanes[0])}})
	if !withIDs {
		return
	}
	st := run.NewStore(root)
	runID := fmt.Sprintf("20261125T1200%02dZ-%08x", seq%60, seq)
	var jf protocol.JobFile
	if err := st.ReadRunFile(runID, protocol.JobFileName, &jf); err != nil {
		t.Fatal(err)
	}
	for i := range lanes {
		jf.Group.JobIDs = append(jf.Group.JobIDs, laneJobID(seq, i))
	}
	if err := st.WriteRunFile(runID, protocol.JobFileName, jf); err != nil {
		t.Fatal(err)
	}
}

// TestPushLanesNeverQueued: a push's lane without a run is "not queued"
// (with why) when the daemon does not know its job, "queued" when it
// does, when it cannot say, when there is no lookup, and when the group
// names no job ids (an older spec). A push with a lane never queued and
// nothing running is failed, not running.
func TestPushLanesNeverQueued(t *testing.T) {
	lanes := []string{"check-a", "check-b", "check-c"}
	idB := laneJobID(300, 1)
	never := "never queued: the push stopped before this lane (the daemon does not know job "
	tests := []struct {
		name    string
		jobs    *fakeJobs // nil: no JobLookup
		withIDs bool
		status  string
		summary string   // its start
		lanes   []string // each lane's status
		asked   int      // lookups of the first view
	}{
		{"no lookup", nil, true, "running", "running · 1 passed 2 queued ·", []string{"passed", "queued", "queued"}, 0},
		{"one waiting one never queued", &fakeJobs{states: map[string]protocol.ClaimState{idB: protocol.ClaimQueued}}, true,
			"running", "running · 1 passed 1 queued 1 not queued ·", []string{"passed", "queued", "not_queued"}, 2},
		{"both never queued", &fakeJobs{}, true, "failed", "failed · 1 passed 2 not queued ·", []string{"passed", "not_queued", "not_queued"}, 2},
		{"daemon does not answer", &fakeJobs{err: protocol.ErrNoDaemon}, true, "running", "running · 1 passed 2 queued ·",
			[]string{"passed", "queued", "queued"}, 2},
		{"older spec without job ids", &fakeJobs{}, false, "running", "running · 1 passed 2 queued ·", []string{"passed", "queued", "queued"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writePartialPush(t, root, "push-partial-300", 300, lanes, tc.withIDs)
			cfg := Config{StateRoot: root, Log: zaptest.NewLogger(t), Now: func() time.Time { return fixedNow }}
			if tc.jobs != nil {
				cfg.Jobs = tc.jobs
			}
			s := New(cfg)
			ts := httptest.NewServer(s.Handler())
			t.Cleanup(func() { s.Close(); ts.Close() })

			code, _, body := get(t, ts.URL+"/api/pushes")
			if code != 200 {
				t.Fatalf("GET /api/pushes: %d %s", code, body)
			}
			var out struct{ Pushes []PushStatus }
			if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Pushes) != 1 {
				t.Fatalf("GET /api/pushes: %v, %s", err, body)
			}
			ps := out.Pushes[0]
			if ps.Status != tc.status || !strings.HasPrefix(ps.Summary, tc.summary) || ps.Lanes != 3 {
				t.Errorf("push %s, %q, %d lane(s); want %s, %q…, 3", ps.Status, ps.Summary, ps.Lanes, tc.status, tc.summary)
			}
			if len(ps.Runs) != len(lanes) {
				t.Fatalf("lanes %+v, want %d", ps.Runs, len(lanes))
			}
			notQueued := 0
			for i, ls := range ps.Runs {
				if ls.Lane != lanes[i] || ls.Status != tc.lanes[i] {
					t.Errorf("lane %d: %s %s, want %s %s", i, ls.Lane, ls.Status, lanes[i], tc.lanes[i])
				}
				if ls.Status == statusNotQueued {
					notQueued++
					if ls.Why == nil || ls.Why.Word != "not queued" || ls.Why.Line != never+ls.JobID+")" || ls.JobID != laneJobID(300, i) {
						t.Errorf("lane %s: job %s, why %+v; want job %s, why %q", ls.Lane, ls.JobID, ls.Why, laneJobID(300, i), never+laneJobID(300, i)+")")
					}
				}
			}
			if ps.Counts.NotQueued != notQueued || ps.Counts.Passed != 1 || ps.Counts.Queued+notQueued != 2 {
				t.Errorf("counts %+v", ps.Counts)
			}
			if tc.jobs != nil && tc.jobs.total() != tc.asked {
				t.Errorf("lookups %v, want %d", tc.jobs.asked, tc.asked)
			}

			// The push's page: each lane once, the never-queued ones saying why.
			code, _, page := get(t, ts.URL+"/pushes/push-partial-300")
			if code != 200 {
				t.Fatalf("GET /pushes/push-partial-300: %d", code)
			}
			for _, l := range lanes {
				if n := strings.Count(page, `data-lane="`+l+`"`); n != 1 {
					t.Errorf("the push page has %d rows of %s, want 1", n, l)
				}
			}
			if got := strings.Count(page, `<span class="badge st-not_queued">not queued</span>`); got != notQueued {
				t.Errorf("the push page shows %d lanes not queued, want %d", got, notQueued)
			}
			if notQueued > 0 && !strings.Contains(page, "<b>not queued</b> "+never) {
				t.Errorf("the push page lacks the why line %q", never)
			}
			if !strings.Contains(page, htmlEscape(tc.summary)) {
				t.Errorf("the push page lacks the summary %q", tc.summary)
			}
			_, _, list := get(t, ts.URL+"/?status=not_queued")
			if got := strings.Count(list, `data-status="not_queued"`); got != notQueued {
				t.Errorf("/?status=not_queued lists %d lanes, want %d", got, notQueued)
			}
		})
	}
}

// TestPushLookupsCachedAndBounded: the daemon's answers are kept (a known
// job for good, an unknown one for unknownFor), and one view asks at most
// maxViewLookups times; the lanes past that stay "queued" until a later
// view.
func TestPushLookupsCachedAndBounded(t *testing.T) {
	root := t.TempDir()
	var lanes []string
	for i := range maxViewLookups + 8 {
		lanes = append(lanes, fmt.Sprintf("check-%02d", i))
	}
	writePartialPush(t, root, "push-many-301", 301, lanes, true)
	now := fixedNow
	// Every second lane's job is queued; the others were never queued.
	jobs := &fakeJobs{states: map[string]protocol.ClaimState{}}
	for i := 1; i < len(lanes); i += 2 {
		jobs.states[laneJobID(301, i)] = protocol.ClaimQueued
	}
	s := New(Config{StateRoot: root, Jobs: jobs, Log: zaptest.NewLogger(t), Now: func() time.Time { return now }})
	t.Cleanup(s.Close)
	pending := len(lanes) - 1
	wantNever := pending / 2 // lanes 2, 4, …
	view := func() PushCounts {
		t.Helper()
		entries, err := s.loadRuns()
		if err != nil {
			t.Fatal(err)
		}
		v, end := s.newView(t.Context())
		defer end()
		items := collect(entries)
		if len(items) != 1 || items[0].Push == nil {
			t.Fatalf("items %+v, want one push", items)
		}
		return s.pushStatus(v, items[0].Push).Counts
	}
	steps := []struct {
		name      string
		advance   time.Duration
		asked     int // lookups so far
		notQueued int
	}{
		{"first view: bounded", 0, maxViewLookups, maxViewLookups / 2},
		{"second view: the rest", 0, pending, wantNever},
		{"third view: all cached", 0, pending, wantNever},
		{"unknown answers expire", unknownFor, pending + wantNever, wantNever},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		c := view()
		if got := jobs.total(); got != st.asked {
			t.Errorf("%s: %d lookups in all, want %d", st.name, got, st.asked)
		}
		if c.NotQueued != st.notQueued || c.NotQueued+c.Queued != pending {
			t.Errorf("%s: counts %+v, want %d not queued of %d", st.name, c, st.notQueued, pending)
		}
	}
	for id, n := range jobs.asked {
		if _, queued := jobs.states[id]; queued && n != 1 {
			t.Errorf("job %s (queued) looked up %d times, want once", id, n)
		}
	}
}

// TestJobCacheTrim: a full cache drops its expired unknown answers first,
// then its older half.
func TestJobCacheTrim(t *testing.T) {
	var c jobCache
	t0 := fixedNow
	for i := range maxKnownJobs {
		c.put(fmt.Sprint(i), i%2 == 0, t0.Add(time.Duration(i)*time.Millisecond))
	}
	now := t0.Add(unknownFor + time.Hour)
	c.put("new", true, now)
	if _, ok := c.get("1", now); ok {
		t.Error("an expired unknown answer survived a trim")
	}
	if known, ok := c.get("0", now); !ok || !known {
		t.Errorf("a known answer was dropped while expired ones were there: %v %v", known, ok)
	}
	if len(c.answers) != maxKnownJobs/2+1 {
		t.Errorf("%d answers after the trim, want %d", len(c.answers), maxKnownJobs/2+1)
	}
}
