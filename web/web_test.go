package web

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"jerichoci/internal/treecopy"
	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/fixtures/web")

const fixtures = "../testdata/fixtures"

// fixedNow is the clock of the tests: after every fixture run.
var fixedNow = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

// Run ids of the fixture state root.
const (
	idLegacy  = "20260319T010203Z-deadbeef" // records/run-legacy-role.json, the original's legacy image role
	idPassed  = "20261125T101500Z-3f9c2a1b" // records/run-passed.golden.json, with phases
	idStaged  = "20260322T080000Z-57a9ed00" // records/staged-actionlint-run.json, placeholders filled in
	idRaw     = "20260322T090000Z-57a9ed01" // the same with its placeholders: does not decode
	idBroken  = "20260323T000000Z-0bad0bad" // not JSON
	idDaemon  = "20260324T120000Z-da300001" // records/run-failed-skipped.golden.json with a jerichoci-job.json
	idNoRun   = "20260317T120000Z-deadbeef" // cli/state: a run directory without run.json
	idFailed  = "20260320T093015Z-0badf00d" // cli/state
	idSkipped = "20260318T220000Z-5c1bbed0" // cli/state
	idRust    = "20260319T010203Z-5ea9ed01" // cli/state
)

// fixtureRoot is a state root of the fixtures: testdata/fixtures/cli/state
// and records of testdata/fixtures/records, a record that does not
// decode and a daemon run.
func fixtureRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := treecopy.Copy(t.Context(), filepath.Join(fixtures, "cli", "state"), root, treecopy.Options{}); err != nil {
		t.Fatal(err)
	}
	put := func(id string, b []byte) {
		t.Helper()
		dir := filepath.Join(root, "runs", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "run.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put(idLegacy, readFile(t, filepath.Join(fixtures, "records", "run-legacy-role.json")))
	put(idPassed, readFile(t, filepath.Join(fixtures, "records", "run-passed.golden.json")))
	staged := readFile(t, filepath.Join(fixtures, "records", "staged-actionlint-run.json"))
	put(idRaw, staged)
	filled := strings.NewReplacer("<run_id>", idStaged, "<state>", root, "<source>", "/src/pika", `"<ms>"`, "1200").Replace(string(staged))
	at := time.Date(2026, 3, 22, 8, 0, 0, 0, time.UTC)
	for strings.Contains(filled, "<time>") {
		at = at.Add(1500 * time.Millisecond)
		filled = strings.Replace(filled, "<time>", model.FormatTimestamp(at), 1)
	}
	put(idStaged, []byte(filled))
	put(idBroken, []byte(`{"run_id": "x", "status": `))
	put(idDaemon, readFile(t, filepath.Join(fixtures, "records", "run-failed-skipped.golden.json")))
	if err := run.NewStore(root).WriteRunFile(idDaemon, protocol.JobFileName,
		protocol.JobFile{JobID: "0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11", Worker: "ci-7.1", Delivery: 1, StreamSeq: 42,
			Requester: "ci-bot <merge@queue>", EnqueuedAt: "2026-11-25T10:14:58.512873915Z"}); err != nil {
		t.Fatal(err)
	}
	return root
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestServer(t *testing.T, root string, logs LogFollower) (*Server, *httptest.Server) {
	t.Helper()
	s := New(Config{StateRoot: root, Logs: logs, Log: zaptest.NewLogger(t), Poll: 20 * time.Millisecond,
		Now: func() time.Time { return fixedNow }})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { s.Close(); ts.Close() })
	return s, ts
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestRunsPageListsEveryRunNewestFirst(t *testing.T) {
	_, ts := newTestServer(t, fixtureRoot(t), nil)
	code, h, body := get(t, ts.URL+"/")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", code, h.Get("Content-Type"))
	}
	rows := regexp.MustCompile(`<tr class="run" data-run="([^"]+)" data-status="([^"]+)">`).FindAllStringSubmatch(body, -1)
	var got []string
	for _, r := range rows {
		got = append(got, r[1]+" "+r[2])
	}
	// created_at order; an undecodable record by the time its id names.
	want := []string{idPassed + " passed", idDaemon + " failed", idBroken + " error", idRaw + " error", idStaged + " passed",
		idFailed + " failed", idRust + " passed", idLegacy + " passed", idSkipped + " skipped"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range []string{
		`href="/runs/` + idLegacy + `"`,
		"Run the Incus-backed pre-merge agent contracts lane", // target_description
		"2 passed", "1 passed 1 failed",
		"4eef499fd1",                 // the head, short
		"0b6f6c1e",                   // the daemon job, short
		"ci-bot &lt;merge@queue&gt;", // its requester, escaped
		`<td class="num">2.0s</td>`,  // queued: from the job's publication, 2 s before the run
		"local run",
		`data-status="error"`,
		"unexpected end of JSON input", `got &#34;&lt;time&gt;&#34;`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("the runs page lacks %q", w)
		}
	}
	if strings.Contains(body, idNoRun) {
		t.Errorf("a run directory without run.json is listed")
	}
}

func TestRunsPageOfAnEmptyStateRoot(t *testing.T) {
	_, ts := newTestServer(t, t.TempDir(), nil)
	code, _, body := get(t, ts.URL+"/")
	if code != 200 || !strings.Contains(body, "No runs yet") {
		t.Errorf("GET / of an empty state root = %d:\n%s", code, body)
	}
	code, _, body = get(t, ts.URL+"/api/runs")
	if code != 200 || strings.TrimSpace(body) != "{\n  \"runs\": []\n}" {
		t.Errorf("GET /api/runs of an empty state root = %d %s", code, body)
	}
}

func TestAPIRunsGolden(t *testing.T) {
	root := fixtureRoot(t)
	_, ts := newTestServer(t, root, nil)
	code, h, body := get(t, ts.URL+"/api/runs")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/runs = %d %s: %s", code, h.Get("Content-Type"), body)
	}
	golden := filepath.Join(fixtures, "web", "api-runs.golden.json")
	if *update {
		if err := os.WriteFile(golden, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := string(readFile(t, golden)); body != want {
		t.Errorf("GET /api/runs differs from %s (go test ./web -update rewrites it):\n%s", golden, body)
	}
}

func TestAPIRunsLimit(t *testing.T) {
	_, ts := newTestServer(t, fixtureRoot(t), nil)
	for _, tc := range []struct {
		query string
		code  int
		runs  int
		err   string
	}{
		{"", 200, 9, ""},
		{"?limit=2", 200, 2, ""},
		{"?limit=1000", 200, 9, ""},
		{"?limit=0", 400, 0, "query parameter `limit` \"0\": expected an integer from 1 to 1000 (default 100)"},
		{"?limit=-3", 400, 0, "query parameter `limit` \"-3\": expected an integer from 1 to 1000 (default 100)"},
		{"?limit=1001", 400, 0, "query parameter `limit` \"1001\": expected an integer from 1 to 1000 (default 100)"},
		{"?limit=ten", 400, 0, "query parameter `limit` \"ten\": expected an integer from 1 to 1000 (default 100)"},
		{"?limit=", 400, 0, "query parameter `limit` \"\": expected an integer from 1 to 1000 (default 100)"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, _, body := get(t, ts.URL+"/api/runs"+tc.query)
			var out struct {
				Runs  []RunSummary `json:"runs"`
				Error string       `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if code != tc.code || len(out.Runs) != tc.runs || out.Error != tc.err {
				t.Errorf("GET /api/runs%s = %d, %d runs, error %q; want %d, %d runs, error %q", tc.query, code, len(out.Runs), out.Error, tc.code, tc.runs, tc.err)
			}
			if tc.runs == 2 && (out.Runs[0].RunID != idPassed || out.Runs[1].RunID != idDaemon) {
				t.Errorf("limit=2: %s, %s; want the newest two", out.Runs[0].RunID, out.Runs[1].RunID)
			}
		})
	}
}

func TestAPIRunIsTheRecordAsStored(t *testing.T) {
	root := fixtureRoot(t)
	_, ts := newTestServer(t, root, nil)
	for _, id := range []string{idLegacy, idPassed, idStaged, idDaemon, idFailed, idSkipped, idRust} {
		t.Run(id, func(t *testing.T) {
			code, h, body := get(t, ts.URL+"/api/runs/"+id)
			want := readFile(t, filepath.Join(root, "runs", id, "run.json"))
			if code != 200 || h.Get("Content-Type") != "application/json" || body != string(want) {
				t.Errorf("GET /api/runs/%s = %d %s, %d bytes; want run.json as stored (%d bytes)", id, code, h.Get("Content-Type"), len(body), len(want))
			}
		})
	}
}

func TestAPIRunErrors(t *testing.T) {
	_, ts := newTestServer(t, fixtureRoot(t), nil)
	for _, tc := range []struct {
		name, path string
		code       int
		err        string
	}{
		{"unknown", "/api/runs/20990101T000000Z-00000000", 404, "no run 20990101T000000Z-00000000"},
		{"no run.json", "/api/runs/" + idNoRun, 404, "no run " + idNoRun},
		{"dot dot", "/api/runs/%2e%2e", 400, `run id "..": expected a run directory name`},
		{"traversal", "/api/runs/..%2F..%2Fetc", 400, `run id "../../etc": expected a run directory name`},
		{"hidden", "/api/runs/.pikaci", 400, `run id ".pikaci": expected a run directory name`},
		{"undecodable", "/api/runs/" + idBroken, 500, "runs/" + idBroken + "/run.json: "},
		{"placeholders", "/api/runs/" + idRaw, 500, `expected an RFC 3339 timestamp, got "<time>"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := get(t, ts.URL+tc.path)
			var out struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatalf("%s: not a JSON error: %v", body, err)
			}
			if code != tc.code || h.Get("Content-Type") != "application/json" || !strings.Contains(out.Error, tc.err) {
				t.Errorf("GET %s = %d %q; want %d with an error containing %q", tc.path, code, out.Error, tc.code, tc.err)
			}
		})
	}
}

func TestRunPages(t *testing.T) {
	root := fixtureRoot(t)
	_, ts := newTestServer(t, root, nil)
	bar := regexp.MustCompile(`class="bar ([^"]+)" style="left: ([0-9.]+)%; width: ([0-9.]+)%"`)
	for _, tc := range []struct {
		id   string
		want []string
		bars int // timeline bars: prepare nodes, jobs, phases
	}{
		{idLegacy, []string{"Run pika-cloud unit tests", "server-agent-api-tests", "test passed", "0", "Run the Incus-backed pre-merge agent contracts lane"}, 3},
		{idPassed, []string{"wait_for_completion", "ph-launch_guest"}, 7},
		{idStaged, []string{"prepare-pika-followup-linux-rust-workspace-deps", "pika-actionlint"}, 10},
		{idFailed, []string{"core-agent-nip98-test", "0f3c1d2e9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d"}, -1},
		{idSkipped, []string{"skipped", "No job has started."}, 0},
		{idDaemon, []string{"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11 (worker ci-7.1, delivery 1)"}, -1},
	} {
		t.Run(tc.id, func(t *testing.T) {
			code, _, body := get(t, ts.URL+"/runs/"+tc.id)
			if code != 200 {
				t.Fatalf("GET /runs/%s = %d:\n%s", tc.id, code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("the page of run %s lacks %q", tc.id, w)
				}
			}
			if strings.Contains(body, "ZgotmplZ") {
				t.Errorf("a template value was refused (ZgotmplZ)")
			}
			bars := bar.FindAllStringSubmatch(body, -1)
			if tc.bars >= 0 && len(bars) != tc.bars {
				t.Errorf("%d timeline bars, want %d", len(bars), tc.bars)
			}
			for _, b := range bars {
				var l, w float64
				fmt.Sscan(b[2], &l)
				fmt.Sscan(b[3], &w)
				if l < 0 || w <= 0 || l+w > 100.001 {
					t.Errorf("bar %s at %s%% width %s%%: outside the axis", b[1], b[2], b[3])
				}
			}
			if strings.Contains(body, "/static/live.js") {
				t.Errorf("the page of a finished run loads the live script")
			}
		})
	}
	// The logs of the jobs, from host.log.
	_, _, body := get(t, ts.URL+"/runs/"+idFailed)
	log := readFile(t, filepath.Join(root, "runs", idFailed, "jobs", "server-agent-api-tests", "host.log"))
	if first, _, _ := strings.Cut(string(log), "\n"); first == "" || !strings.Contains(body, htmlEscape(first)) {
		t.Errorf("the run page lacks host.log's first line %q", first)
	}
}

func htmlEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&#34;")
		case '\'':
			b.WriteString("&#39;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestRunPageErrors(t *testing.T) {
	_, ts := newTestServer(t, fixtureRoot(t), nil)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/runs/20990101T000000Z-00000000", 404, "no run 20990101T000000Z-00000000"},
		{"/runs/%2e%2e", 400, "expected a run directory name"},
		{"/runs/" + idBroken, 500, "run.json"},
		{"/runs/" + idLegacy + "/jobs/nope/log", 404, "run " + idLegacy + " has no job nope"},
		{"/runs/" + idLegacy + "/jobs/%2e%2e/log", 400, `job id ".."`},
		{"/runs/" + idLegacy + "/jobs/pika-cloud-unit/log", 404, "has no host.log"},
		{"/nope", 404, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, _, body := get(t, ts.URL+tc.path)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s = %d %q; want %d containing %q", tc.path, code, body, tc.code, tc.want)
			}
		})
	}
}

func TestJobLogIsHostLog(t *testing.T) {
	root := fixtureRoot(t)
	_, ts := newTestServer(t, root, nil)
	code, h, body := get(t, ts.URL+"/runs/"+idFailed+"/jobs/server-agent-api-tests/log")
	want := readFile(t, filepath.Join(root, "runs", idFailed, "jobs", "server-agent-api-tests", "host.log"))
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") || body != string(want) {
		t.Errorf("GET …/log = %d %s %q; want host.log as text", code, h.Get("Content-Type"), body)
	}
}

// hostileRun writes a running run whose strings and host.log carry markup.
func hostileRun(t *testing.T, root, id string) {
	t.Helper()
	st := run.NewStore(root)
	evil := `<script>alert("x")</script><img src=x onerror=alert(1)>`
	started := fixedNow.Add(-time.Minute)
	rec := model.RunRecord{RunID: id, Status: model.StatusFailed, TargetID: ptr("evil<script>"), TargetDescription: ptr("lane " + evil),
		SourceRoot: "/src", CreatedAt: model.At(started.Add(-time.Second)), FinishedAt: model.TimestampPtr(fixedNow), GitHead: ptr(`"><script>`),
		Message: ptr("run " + evil),
		Jobs: []model.JobRecord{{ID: "job", Description: "desc " + evil, Status: model.StatusFailed, Executor: model.ExecutorRemoteLinuxVM,
			HostLogPath: "/elsewhere", GuestLogPath: "/elsewhere", StartedAt: model.At(started), FinishedAt: model.TimestampPtr(fixedNow),
			Message: ptr("job " + evil)}}}
	if err := st.CreateJob(id, "job"); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteRun(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.HostLogPath(id, "job"), []byte("[runner:stdout] log "+evil+"\n</pre><script>alert(2)</script>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ptr(s string) *string { return &s }

func TestRecordsAndLogsAreEscaped(t *testing.T) {
	root := t.TempDir()
	hostileRun(t, root, "20260101T000000Z-e5c00000")
	_, ts := newTestServer(t, root, nil)
	for _, path := range []string{"/", "/runs/20260101T000000Z-e5c00000"} {
		code, h, body := get(t, ts.URL+path)
		if code != 200 {
			t.Fatalf("GET %s = %d", path, code)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img") || strings.Contains(body, "</pre><script>") {
			t.Errorf("GET %s: markup of the record or log is in the page unescaped:\n%s", path, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(") {
			t.Errorf("GET %s: the escaped text is missing", path)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	_, _, body := get(t, ts.URL+"/runs/20260101T000000Z-e5c00000")
	for _, w := range []string{"job &lt;script&gt;", "run &lt;script&gt;", "[runner:stdout] log &lt;script&gt;", "&lt;/pre&gt;&lt;script&gt;alert(2)"} {
		if !strings.Contains(body, w) {
			t.Errorf("the run page lacks %q", w)
		}
	}
}

func TestReadLogTail(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		content  string
		max      int64
		text     string
		from, to int64
	}{
		{"whole", "a\nb\n", 100, "a\nb\n", 0, 4},
		{"cut at a line", "line1\nline2\nline3\n", 9, "line3\n", 12, 18},
		{"no newline after the cut", "abcdefgh", 3, "fgh", 5, 8},
		{"unfinished rune", "ok \xc3", 100, "ok ", 0, 3},
		{"empty", "", 100, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readLogTail(p, tc.max)
			if err != nil || got.Text != tc.text || got.From != tc.from || got.To != tc.to || got.Missing {
				t.Errorf("readLogTail = %+v, %v; want %q from %d to %d", got, err, tc.text, tc.from, tc.to)
			}
		})
	}
	if got, err := readLogTail(filepath.Join(dir, "absent"), 10); err != nil || !got.Missing {
		t.Errorf("absent file: %+v, %v", got, err)
	}
}

func TestCompleteUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"abc", 3},
		{"a\xc3", 1},         // é cut after its first byte
		{"a\xc3\xa9", 3},     // é whole
		{"a\xe2\x82", 1},     // € cut
		{"a\xf0\x9f\x98", 1}, // an emoji cut
		{"a\xff", 2},         // invalid: complete as it is
		{"\x80\x80\x80\x80", 4},
	} {
		if got := completeUTF8([]byte(tc.in)); got != tc.want {
			t.Errorf("completeUTF8(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{850 * time.Millisecond, "850ms"},
		{12300 * time.Millisecond, "12.3s"},
		{245 * time.Second, "4m05s"},
		{2*time.Hour + 3*time.Minute, "2h03m"},
		{-time.Second, "–"},
	} {
		if got := fmtDuration(tc.d); got != tc.want {
			t.Errorf("fmtDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestStaticAssets(t *testing.T) {
	_, ts := newTestServer(t, t.TempDir(), nil)
	for _, p := range []string{"/static/live.js", "/static/style.css"} {
		code, _, body := get(t, ts.URL+p)
		if code != 200 || len(body) == 0 {
			t.Errorf("GET %s = %d, %d bytes", p, code, len(body))
		}
	}
}
