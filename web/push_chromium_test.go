package web

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/zap/zaptest"

	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
)

// chromiumTab starts Debian's headless chromium (scripts/chromium-up) and
// returns its tab; without it the test fails in CI and is skipped
// elsewhere.
func chromiumTab(t *testing.T) context.Context {
	t.Helper()
	testenv.Needs(t, "chromium (scripts/chromium-up)")
	path, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Missing(t, "needs chromium on PATH for the headless browser (scripts/chromium-up): %v", err)
	}
	return itest.Browser(t, path)
}

// do runs one browser action with a bound and returns its value.
func do[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open navigates to url and waits until sel is shown.
func open(t *testing.T, ctx context.Context, url, sel string) {
	t.Helper()
	do(t, ctx, "open "+url, chromedp.Steps(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel))))
}

// shoot saves what the window shows (as a user sees the page open) as a
// PNG in the test's directory and, when JERICHOCI_SCREENSHOT_DIR is set,
// there too.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := do(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s: not a PNG (%d bytes)", name, len(png))
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("JERICHOCI_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
	}
}

// laneSeen is a lane row of the push page as the browser shows it.
type laneSeen struct {
	Lane, Status, Why string
}

// logSeen is a job's log section on a run page as the browser shows it.
type logSeen struct {
	Job     string `json:"job"`
	Open    bool   `json:"open"`
	Visible bool   `json:"visible"` // laid out: not folded away
	AtEnd   bool   `json:"atEnd"`   // scrolled to its last line
	Stderr  int    `json:"stderr"`  // marked stderr spans
	Color   string `json:"color"`   // a stderr span's color
	InView  bool   `json:"inView"`  // its section is in the window
}

// TestPushPageInChromium loads the push of ten pika lanes and a failed
// run's page in headless chromium and checks what a user sees: the push's
// line, every lane by its check-* title with status and why, the failed
// job's log open at its last lines with stderr marked, the window on it,
// and passing logs folded.
func TestPushPageInChromium(t *testing.T) {
	ctx := chromiumTab(t)
	root := pushRoot(t)
	s := New(Config{StateRoot: root, Log: zaptest.NewLogger(t), Now: func() time.Time { return fixedNow }})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { s.Close(); ts.Close() })

	// The push page.
	open(t, ctx, ts.URL+"/pushes/push-4eef499-186", "#lanes")
	summary := do(t, ctx, "read the summary", chromedp.Text(chromedp.CSS("#push-summary")))
	lanes := do(t, ctx, "read the lanes", chromedp.Evaluate[[]laneSeen](`Array.from(document.querySelectorAll("tr.lane")).map(r => ({
		Lane: r.querySelector(".title").textContent, Status: r.querySelector(".badge").textContent,
		Why: r.querySelector("td.why").textContent}))`))
	if want := "Run #186 failed · 9 passed 1 failed · head 4eef499 · queued 2026-11-25 09:00:00 UTC · 10 lane(s) · queued 8.0s · ran 2m43s"; summary != want {
		t.Errorf("push summary = %q, want %q", summary, want)
	}
	if len(lanes) != len(pikaLanes) {
		t.Fatalf("the push page shows %d lanes, want %d: %+v", len(lanes), len(pikaLanes), lanes)
	}
	for i, l := range lanes {
		want := laneSeen{Lane: pikaLanes[i], Status: "passed"}
		if l.Lane == "check-pika-followup" {
			want.Status, want.Why = "failed", "test failed exit 101 in pika-followup"
		}
		if l != want {
			t.Errorf("lane %d shows %+v, want %+v", i, l, want)
		}
	}
	shoot(t, ctx, "push-186")

	// An older push whose lanes failed every other way: each says why.
	open(t, ctx, ts.URL+"/pushes/push-1a2b3c4-150", "#lanes")
	words := do(t, ctx, "read the why words", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("td.why b")).map(b => b.textContent)`))
	if got, want := strings.Join(words, ","), "timed out,cancelled,refused,never ran"; got != want {
		t.Errorf("push #150 says why %q, want %q", got, want)
	}
	shoot(t, ctx, "push-150")

	// The runs list: grouped by push, the handed-back attempt not a row.
	open(t, ctx, ts.URL+"/", "#runs")
	rows := do(t, ctx, "count the rows", chromedp.Evaluate[int](`document.querySelectorAll('tbody[data-push="push-4eef499-186"] tr.run').length`))
	head := do(t, ctx, "read the push line", chromedp.Text(chromedp.CSS(`tbody[data-push="push-4eef499-186"] tr.push-head`)))
	if rows != 10 || !strings.Contains(head, "Latest run #186") {
		t.Errorf("runs list: push #186 has %d lane rows (want 10) under %q", rows, head)
	}
	shoot(t, ctx, "runs-by-push")

	// The failed lane's run page opens on its log.
	open(t, ctx, ts.URL+"/runs/20261125T090014Z-18600006", "#log-0")
	logs := do(t, ctx, "read the logs", chromedp.Evaluate[[]logSeen](`Array.from(document.querySelectorAll("section.job")).map(s => {
		const pre = s.querySelector("pre.log"), d = s.querySelector("details"), r = s.getBoundingClientRect();
		const e = pre.querySelector(".stderr");
		return {job: pre.dataset.job, open: d.open, visible: pre.checkVisibility(),
			atEnd: pre.scrollHeight > pre.clientHeight && pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 2,
			stderr: pre.querySelectorAll(".stderr").length, color: e ? getComputedStyle(e).color : "",
			inView: r.top < innerHeight && r.bottom > 0};
	})`))
	if len(logs) != 3 {
		t.Fatalf("the failed run shows %d job logs, want 3: %+v", len(logs), logs)
	}
	for _, l := range logs[:2] {
		if l.Open || l.Visible {
			t.Errorf("passing job's log %+v: want it folded", l)
		}
	}
	if f := logs[2]; f.Job != "pika-followup" || !f.Open || !f.Visible || !f.AtEnd || f.Stderr != 2 || !f.InView || f.Color == "rgb(230, 237, 243)" {
		t.Errorf("failed job's log: %+v; want pika-followup open, shown, scrolled to its end, in the window, with 2 marked stderr runs in their own color", f)
	}
	last := do(t, ctx, "read the failed log's last line", chromedp.Evaluate[string](`document.querySelector("pre[data-focus]").textContent.trim().split("\n").pop()`))
	if last != "[pikaci] guest runner exited with 101" {
		t.Errorf("the failed log ends with %q", last)
	}
	why := do(t, ctx, "read why", chromedp.Text(chromedp.CSS("#why")))
	if why != "test failed exit 101 in pika-followup" {
		t.Errorf("the failed run says %q, want %q", why, "test failed exit 101 in pika-followup")
	}
	shoot(t, ctx, "run-failed")
}
