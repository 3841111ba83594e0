package daemon_test

import (
	"flag"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"

	"jerichoci/run/protocol"
)

// hostsLoadJobs is how many jobs TestHostsLoadSpreads queues at once: 24
// in make check, 120 for docs/RELIABILITY.md's figures.
var hostsLoadJobs = flag.Int("hosts-load-jobs", 24, "jobs TestHostsLoadSpreads queues at once")

// TestHostsLoadSpreads: three hosts of two workers each, their incusd over
// HTTPS only, take a burst of demo-pass jobs queued at once. Every job has
// exactly one final record, passed, and ran once; every host ran at least
// a quarter of its fair share (a count, not a time). It logs, per host,
// the jobs it ran and its worker-seconds idle while jobs still waited to
// start (the backlog), the figures of docs/RELIABILITY.md.
func TestHostsLoadSpreads(t *testing.T) {
	n := *hostsLoadJobs
	if n < 6 {
		t.Fatalf("-hosts-load-jobs %d: expected at least 6", n)
	}
	b := startTestBed(t, 2)
	src := b.o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("# hosts load test\n"))))
	ids := make([]string, n)
	start := time.Now()
	for i := range ids {
		ids[i] = uuid.NewString()
		b.o.publish(t, protocol.JobSubject("demo-pass"), specWith(t, ids[i], "demo-pass", src, nil), ids[i])
	}
	res := b.o.waitResults(t, ids, time.Duration(n)*30*time.Second)
	took := time.Since(start)
	runs := diskRuns(t, b.daemons()...)

	perHost := map[string][]loadSpan{}
	var lastStart time.Time
	for _, id := range ids {
		r := res[id]
		checkPassed(t, id, r)
		checkOneFinal(t, id, r, runs[id])
		if len(runs[id]) != 1 {
			t.Errorf("job %s ran %d times, want once", id, len(runs[id]))
		}
		for _, dr := range runs[id] {
			if dr.rec.RunID != r.RunID || dr.rec.FinishedAt == nil {
				continue
			}
			perHost[dr.daemon] = append(perHost[dr.daemon], loadSpan{dr.rec.CreatedAt.Time, dr.rec.FinishedAt.Time})
			if dr.rec.CreatedAt.After(lastStart) {
				lastStart = dr.rec.CreatedAt.Time
			}
		}
	}
	// Worker-seconds idle in the backlog: from the first job's start to the
	// last job's start, each host has 2 slots; count the time its slots
	// were not all running a job.
	var first time.Time
	for _, ss := range perHost {
		for _, s := range ss {
			if first.IsZero() || s.from.Before(first) {
				first = s.from
			}
		}
	}
	var report []string
	for _, d := range b.daemons() {
		ss := perHost[d.name]
		if want := n / 3 / 4; len(ss) < want {
			t.Errorf("host %s ran %d of %d jobs, want at least %d (a quarter of its share)", d.name, len(ss), n, want)
		}
		report = append(report, fmt.Sprintf("%s ran %d, idle %.1f worker-s in the backlog", d.name, len(ss), idleInBacklog(ss, first, lastStart, 2).Seconds()))
	}
	sort.Strings(report)
	itest.Report(t, "%d jobs queued at once on 3 hosts x 2 workers: all done in %s, backlog %s; %s",
		n, took.Round(100*time.Millisecond), lastStart.Sub(first).Round(100*time.Millisecond), strings.Join(report, "; "))
	for _, id := range ids {
		checkNoInstances(t, b.cl, id)
	}
}

// loadSpan is when one run of a host ran.
type loadSpan struct{ from, to time.Time }

// idleInBacklog is slots × (to − from) minus the time the spans ran
// within [from, to], each span clipped to it.
func idleInBacklog(spans []loadSpan, from, to time.Time, slots int) time.Duration {
	total := time.Duration(slots) * to.Sub(from)
	for _, s := range spans {
		a, z := s.from, s.to
		if a.Before(from) {
			a = from
		}
		if z.After(to) {
			z = to
		}
		if z.After(a) {
			total -= z.Sub(a)
		}
	}
	return max(total, 0)
}
