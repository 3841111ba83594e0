package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// requireChromium returns Debian's chromium (scripts/chromium-up); without
// it the test fails in CI and is skipped elsewhere.
func requireChromium(t *testing.T) string {
	t.Helper()
	testenv.Needs(t, "chromium (scripts/chromium-up)")
	p, err := exec.LookPath("chromium")
	if err != nil {
		msg := "needs chromium on PATH for the headless browser (scripts/chromium-up): " + err.Error()
		testenv.Missing(t, "%s", msg)
	}
	return p
}

// within runs f with a bound on one browser action.
func within[T any](t *testing.T, ctx context.Context, bound time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshots writes full-page PNGs to a temporary directory and, when
// JERICHOCI_SCREENSHOT_DIR is set, there too.
type screenshots struct {
	t    *testing.T
	dirs []string
}

func newScreenshots(t *testing.T) *screenshots {
	s := &screenshots{t: t, dirs: []string{filepath.Join(t.TempDir(), "screenshots")}}
	if d := os.Getenv("JERICHOCI_SCREENSHOT_DIR"); d != "" {
		s.dirs = append(s.dirs, d)
	}
	return s
}

func (s *screenshots) take(ctx context.Context, name string) {
	s.t.Helper()
	png := within(s.t, ctx, 30*time.Second, "screenshot "+name, chromedp.FullScreenshot(100))
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		s.t.Fatalf("screenshot %s: not a PNG (%d bytes)", name, len(png))
	}
	for _, d := range s.dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			s.t.Fatal(err)
		}
		p := filepath.Join(d, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			s.t.Fatal(err)
		}
		s.t.Logf("screenshot %s", p)
	}
}

// pageRun is a row of the runs list as the browser sees it.
type pageRun struct {
	Run       string `json:"run"`
	Status    string `json:"status"`
	Title     string `json:"title"`
	Jobs      string `json:"jobs"`
	Requester string `json:"requester"`
}

var liveLine = regexp.MustCompile(`live-line-(\d+)`)

// lastLiveLine is the highest live-line-N in text (0: none).
func lastLiveLine(text string) int {
	n := 0
	for _, m := range liveLine.FindAllStringSubmatch(text, -1) {
		if v, _ := strconv.Atoi(m[1]); v > n {
			n = v
		}
	}
	return n
}

// TestStatusPage drives the daemon's status page in headless chromium: the
// runs list shows a passed and a failed lane, a run page shows its job's
// log, and the page of a running job shows new lines of its log as they
// are printed (server-sent events fed by the live logs on NATS) without
// reloading.
func TestStatusPage(t *testing.T) {
	chrome := requireChromium(t)
	cl := require(t)
	url := startNATS(t)
	const lines = 50
	cat := writeCatalogWith(t,
		catalogJob{Target: "page-pass", Command: "echo page-pass-output"},
		catalogJob{Target: "page-fail", Command: "echo 'page-fail-output <b>not bold</b>'; exit 3"},
		catalogJob{Target: "page-live", Command: fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "live-line-$i"; i=$((i+1)); sleep 0.3; done`, lines)},
	)
	addTarget(t, cat, "page-two", map[string]string{
		// The first job holds after its first line until the test has
		// opened its page and releases it (releaseJob): no race between
		// the job's pace and the browser's on a loaded machine.
		"first":  `echo first-line-1; while [ ! -e ` + releaseFile + ` ]; do sleep 0.1; done; i=2; while [ $i -le 8 ]; do echo "first-line-$i"; i=$((i+1)); sleep 0.3; done`,
		"second": `i=1; while [ $i -le 8 ]; do echo "second-line-$i"; i=$((i+1)); sleep 0.3; done`,
	}, "first", "second")
	port := itest.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	d := startDaemon(t, url, "daemon-page", cat, 2, "--http-listen", fmt.Sprintf("127.0.0.1:%d", port))
	o := newOrchestrator(t, url)

	ids := map[string]string{"page-pass": uuid.NewString(), "page-fail": uuid.NewString()}
	for target, id := range ids {
		spec := specWith(t, id, target, hostPathSource(o.src), map[string]any{"requester": "merge-queue <" + target + ">"})
		o.publish(t, protocol.JobSubject(target), spec, id)
	}
	res := o.waitResults(t, []string{ids["page-pass"], ids["page-fail"]}, 3*time.Minute)
	pass, fail := res[ids["page-pass"]], res[ids["page-fail"]]
	if pass.Status != model.StatusPassed || fail.Status != model.StatusFailed {
		t.Fatalf("results: page-pass %s %q, page-fail %s %q", pass.Status, model.Value(pass.Message), fail.Status, model.Value(fail.Message))
	}

	ctx := itest.Browser(t, chrome)
	shots := newScreenshots(t)

	// The runs list: both lanes with their statuses.
	within(t, ctx, 30*time.Second, "open /", chromedp.Steps(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#runs"))))
	rows := within(t, ctx, 10*time.Second, "read the runs", chromedp.Evaluate[[]pageRun](`Array.from(document.querySelectorAll("tr.run")).map(r => ({
		run: r.dataset.run, status: r.querySelector(".badge").textContent, title: r.querySelector("a.title").textContent,
		jobs: (r.querySelector("td.jobs") || {}).textContent || "",
		requester: (r.querySelector("td.requester") || {}).textContent || ""}))`))
	byRun := map[string]pageRun{}
	for _, r := range rows {
		byRun[r.Run] = r
	}
	for _, tc := range []struct {
		rec    model.RunRecord
		target string
		jobs   string
	}{{pass, "page-pass", "1 passed"}, {fail, "page-fail", "0 passed 1 failed"}} {
		r, ok := byRun[tc.rec.RunID]
		if !ok {
			t.Errorf("the runs list lacks run %s (%s): %+v", tc.rec.RunID, tc.target, rows)
			continue
		}
		if r.Status != string(tc.rec.Status) || r.Title != "test target "+tc.target || r.Jobs != tc.jobs || r.Requester != "merge-queue <"+tc.target+">" {
			t.Errorf("run %s shows %+v; want status %s, title %q, jobs %q, requester %q", tc.rec.RunID, r, tc.rec.Status,
				"test target "+tc.target, tc.jobs, "merge-queue <"+tc.target+">")
		}
	}
	shots.take(ctx, "runs")

	// Each run page: the job's log.
	for _, tc := range []struct {
		rec  model.RunRecord
		name string
		want string
	}{{pass, "run-pass", "[runner:stdout] page-pass-output"}, {fail, "run-fail", "[runner:stdout] page-fail-output <b>not bold</b>"}} {
		within(t, ctx, 30*time.Second, "open run "+tc.rec.RunID, chromedp.Steps(chromedp.Navigate(base+"/runs/"+tc.rec.RunID),
			chromedp.WaitVisible(chromedp.CSS("#log-0"))))
		text := within(t, ctx, 10*time.Second, "read the log", chromedp.TextContent(chromedp.CSS("#log-0")))
		if !strings.Contains(text, tc.want) {
			t.Errorf("run page %s: the log lacks %q:\n%s", tc.rec.RunID, tc.want, text)
		}
		bold := within(t, ctx, 10*time.Second, "look for markup", chromedp.Evaluate[int](`document.querySelectorAll("#log-0 b").length`))
		if bold != 0 {
			t.Errorf("run page %s: the log's markup became elements", tc.rec.RunID)
		}
		status := within(t, ctx, 10*time.Second, "read the status", chromedp.TextContent(chromedp.CSS("#run-status")))
		if status != string(tc.rec.Status) {
			t.Errorf("run page %s: status %q, want %s", tc.rec.RunID, status, tc.rec.Status)
		}
		shots.take(ctx, tc.name)
	}

	// A running job: its page shows the new lines as they come.
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("page-live"), o.spec(id, "page-live"), id)
	var runID string
	itest.WaitFor(t, "the live job's first lines", 2*time.Minute, func() bool {
		c := o.claim(t, id)
		if c == nil || c.RunID == "" {
			return false
		}
		runID = c.RunID
		b, _ := os.ReadFile(filepath.Join(jobDir(d.stateRoot, runID, "job"), "host.log"))
		return lastLiveLine(string(b)) >= 2
	})
	within(t, ctx, 30*time.Second, "open the live run", chromedp.Steps(chromedp.Navigate(base+"/runs/"+runID),
		chromedp.WaitVisible(chromedp.CSS("#log-0[data-stream]"))))
	// A reload would drop this marker.
	within(t, ctx, 10*time.Second, "set the marker", chromedp.Evaluate[string](`window.jerichociMarker = "no reload"`))
	first := within(t, ctx, 10*time.Second, "read the log", chromedp.TextContent(chromedp.CSS("#log-0")))
	n0 := lastLiveLine(first)
	if n0 == 0 || n0 >= lines {
		t.Fatalf("the page opened with the log at line %d of %d; want a running job:\n%s", n0, lines, first)
	}
	want := fmt.Sprintf("live-line-%d\n", n0+3)
	if strings.Contains(first, want) {
		t.Fatalf("the first load has %q already", want)
	}
	var grown string
	itest.WaitFor(t, "the page to show "+strings.TrimSpace(want), 30*time.Second, func() bool {
		grown = within(t, ctx, 10*time.Second, "read the log", chromedp.TextContent(chromedp.CSS("#log-0")))
		return strings.Contains(grown, want)
	})
	if !strings.HasPrefix(grown, first) {
		t.Errorf("the log did not grow from what the page showed first:\nfirst:\n%s\nthen:\n%s", first, grown)
	}
	shots.take(ctx, "run-live")
	itest.WaitFor(t, "the page to say the job finished", time.Minute, func() bool {
		note := within(t, ctx, 10*time.Second, "read the note", chromedp.TextContent(chromedp.CSS("#live-0")))
		return strings.HasPrefix(note, "finished: passed")
	})
	row := within(t, ctx, 10*time.Second, "read the job's row", chromedp.Evaluate[[]string](
		`["badge-0", "exit-0", "message-0", "sbadge-0"].map(id => document.getElementById(id).textContent)`))
	if strings.Join(row, "|") != "passed|0|test passed|passed" {
		t.Errorf("the job's row and its log's heading after its end: %q, want passed, exit 0, test passed, and passed", row)
	}
	itest.WaitFor(t, "the run's badge to say passed", time.Minute, func() bool {
		return within(t, ctx, 10*time.Second, "read the run's badge", chromedp.TextContent(chromedp.CSS("#run-status"))) == "passed"
	})
	final := within(t, ctx, 10*time.Second, "read the log", chromedp.TextContent(chromedp.CSS("#log-0")))
	for i := 1; i <= lines; i++ {
		if c := strings.Count(final, fmt.Sprintf("live-line-%d\n", i)); c != 1 {
			t.Errorf("the final log has live-line-%d %d times, want once", i, c)
		}
	}
	// The page followed NATS, never the file (the fallback says so).
	if strings.Contains(d.log.String(), "tails host.log instead of NATS") {
		t.Errorf("the live log stream fell back to host.log:\n%s", itest.Tail(d.log.String(), 20))
	}
	marker := within(t, ctx, 10*time.Second, "read the marker", chromedp.Evaluate[string](`window.jerichociMarker || ""`))
	if marker != "no reload" {
		t.Errorf("the page was reloaded (marker %q)", marker)
	}
	shots.take(ctx, "run-live-finished")
	if r := o.waitResults(t, []string{id}, time.Minute)[id]; r.Status != model.StatusPassed {
		t.Errorf("the live job: %s %q", r.Status, model.Value(r.Message))
	}

	// A lane of two jobs, its page opened while the first runs: the page
	// goes on to the second job's log by itself.
	two := uuid.NewString()
	o.publish(t, protocol.JobSubject("page-two"), o.spec(two, "page-two"), two)
	itest.WaitFor(t, "the two-job lane's first lines", 2*time.Minute, func() bool {
		c := o.claim(t, two)
		if c == nil || c.RunID == "" {
			return false
		}
		runID = c.RunID
		b, _ := os.ReadFile(filepath.Join(jobDir(d.stateRoot, runID, "first"), "host.log"))
		return strings.Contains(string(b), "first-line-1\n")
	})
	within(t, ctx, 30*time.Second, "open the two-job run", chromedp.Steps(chromedp.Navigate(base+"/runs/"+runID),
		chromedp.WaitVisible(chromedp.CSS("#log-0[data-stream]"))))
	if n := within(t, ctx, 10*time.Second, "count the jobs", chromedp.Evaluate[int](`document.querySelectorAll("section.job").length`)); n != 1 {
		t.Fatalf("the page opened with %d jobs, want the first only", n)
	}
	releaseJob(t, cl, runID, "first")
	itest.WaitFor(t, "the page to show the second job's whole log and the run passed", time.Minute, func() bool {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		// Not within: the page may be reloading.
		state, err := chromedp.Run(c, chromedp.Evaluate[[]string](`[(document.getElementById("log-1") || {}).textContent || "",
			(document.getElementById("run-status") || {}).textContent || ""]`))
		return err == nil && len(state) == 2 && strings.Contains(state[0], "second-line-8\n") && state[1] == "passed"
	})
	shots.take(ctx, "run-two-jobs")
	if r := o.waitResults(t, []string{two}, time.Minute)[two]; r.Status != model.StatusPassed {
		t.Errorf("the two-job lane: %s %q", r.Status, model.Value(r.Message))
	}
}

// releaseFile is the guest file a held test job waits for.
const releaseFile = "/tmp/jci-release"

// releaseJob lets the held job of a run go on: it writes releaseFile into
// the instance that runs it.
func releaseJob(t *testing.T, cl *incus.Client, runID, job string) {
	t.Helper()
	all, err := cl.ListInstances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range all {
		if in.Config[executor.ConfigRunID] == runID && in.Config[executor.ConfigJobID] == job && in.Status == "Running" {
			if err := cl.PushFile(t.Context(), in.Name, releaseFile, strings.NewReader("go\n"), incus.FileOwner{Mode: 0o644}); err != nil {
				t.Fatalf("release job %s of run %s in %s: %v", job, runID, in.Name, err)
			}
			return
		}
	}
	t.Fatalf("no running instance of job %s of run %s to release", job, runID)
}

// addTarget adds a target of shell jobs (in order) to the catalog file.
func addTarget(t *testing.T, catalog, id string, commands map[string]string, order ...string) {
	t.Helper()
	b, err := os.ReadFile(catalog)
	if err != nil {
		t.Fatal(err)
	}
	var cat map[string]any
	if err := json.Unmarshal(b, &cat); err != nil {
		t.Fatal(err)
	}
	var jobs []any
	for _, j := range order {
		jobs = append(jobs, map[string]any{"id": j, "description": "test job " + j, "timeout_secs": 120,
			"command": map[string]any{"kind": "shell", "command": commands[j]},
			"runtime": map[string]any{"kind": "incus", "incus": map[string]any{"guest_role": "pikaci-runner"}}})
	}
	cat["targets"] = append(cat["targets"].([]any), map[string]any{"id": id, "description": "test target " + id, "jobs": jobs})
	if b, err = json.Marshal(cat); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(catalog, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
