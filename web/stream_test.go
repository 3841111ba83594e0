package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

const (
	liveID  = "20261125T120000Z-11ve0000"
	liveJob = "unit.tests" // '.' is '_' in log subjects
	jobUUID = "7d1e4b52-9f0a-4c1e-8b2d-3a6c5e4f7a11"
)

// liveRun writes a running run whose job runs, with host.log holding log;
// with a job file when daemon is set.
func liveRun(t *testing.T, root, log string, daemon bool) {
	t.Helper()
	st := run.NewStore(root)
	if err := st.CreateJob(liveID, liveJob); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.HostLogPath(liveID, liveJob), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	writeLive(t, root, model.StatusRunning)
	if daemon {
		if err := st.WriteRunFile(liveID, protocol.JobFileName, protocol.JobFile{JobID: jobUUID, Worker: "w.1", Delivery: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

// writeLive writes the run record with the job (and run) in status.
func writeLive(t *testing.T, root string, status model.RunStatus) {
	t.Helper()
	started := fixedNow.Add(-time.Minute)
	job := model.JobRecord{ID: liveJob, Description: "unit tests", Status: status, Executor: model.ExecutorRemoteLinuxVM,
		HostLogPath: "h", GuestLogPath: "g", StartedAt: model.At(started)}
	rec := model.RunRecord{RunID: liveID, Status: status, TargetID: ptr("live"), SourceRoot: "/src",
		CreatedAt: model.At(started), Jobs: []model.JobRecord{job}}
	if status != model.StatusRunning {
		code := int32(0)
		rec.Jobs[0].ExitCode, rec.Jobs[0].Message = &code, ptr("test passed")
		rec.Jobs[0].FinishedAt, rec.FinishedAt = model.TimestampPtr(fixedNow), model.TimestampPtr(fixedNow)
	}
	if err := run.NewStore(root).WriteRun(rec); err != nil {
		t.Fatal(err)
	}
}

func appendLog(t *testing.T, root, s string) {
	t.Helper()
	f, err := os.OpenFile(run.NewStore(root).HostLogPath(liveID, liveJob), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// sse is a stream's events as they come.
type sse struct {
	mu     sync.Mutex
	text   strings.Builder
	lastID int64
	end    map[string]any
	done   chan struct{} // the body ended
}

func openStream(t *testing.T, url string, header http.Header) (*sse, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &sse{lastID: -1, done: make(chan struct{})}
	if resp.StatusCode != 200 {
		close(s.done)
		return s, resp
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				s.mu.Lock()
				if name == "end" {
					_ = json.Unmarshal([]byte(data), &s.end)
				} else if data != "" {
					var d struct{ Text string }
					if err := json.Unmarshal([]byte(data), &d); err != nil {
						t.Errorf("event data %q: %v", data, err)
					}
					s.text.WriteString(d.Text)
				}
				s.mu.Unlock()
				name, data = "", ""
			case strings.HasPrefix(line, "event: "):
				name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = line[len("data: "):]
			case strings.HasPrefix(line, "id: "):
				n, err := strconv.ParseInt(line[len("id: "):], 10, 64)
				if err != nil {
					t.Errorf("event id %q", line)
				}
				s.mu.Lock()
				s.lastID = n
				s.mu.Unlock()
			}
		}
	}()
	return s, resp
}

func (s *sse) Text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.String()
}

// LastID is the id of the last event with one (-1: none yet).
func (s *sse) LastID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// waitText waits until the stream's text contains want.
func (s *sse) waitText(t *testing.T, want string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !strings.Contains(s.Text(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the stream never had %q; it has %q", want, s.Text())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *sse) waitEnd(t *testing.T, bound time.Duration) map[string]any {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(bound):
		t.Fatalf("the stream did not end within %s; text so far %q", bound, s.Text())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end == nil {
		t.Fatalf("the stream ended without an end event; text %q", s.text.String())
	}
	return s.end
}

// fakeFollower replays chunks, then sends those of live as they come.
type fakeFollower struct {
	replay []protocol.LogChunk
	live   chan protocol.LogChunk
	err    error

	mu      sync.Mutex
	jobIDs  []string
	stopped bool
}

func (f *fakeFollower) FollowLogs(ctx context.Context, jobID string, replay bool, fn func(protocol.LogChunk)) (func(), error) {
	f.mu.Lock()
	f.jobIDs = append(f.jobIDs, jobID)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if !replay {
		return nil, fmt.Errorf("the stream must replay")
	}
	for _, c := range f.replay {
		fn(c) // synchronously: a callback that blocked would hang here
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case c := <-f.live:
				fn(c)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
	}, nil
}

func chunk(seq uint64, data string) protocol.LogChunk {
	return protocol.LogChunk{RunID: liveID, Job: "unit_tests", Seq: seq, Data: []byte(data)}
}

func streamURL(base string) string {
	return base + "/runs/" + liveID + "/jobs/" + liveJob + "/log/stream"
}

// TestLiveLogStream: a running job's log goes to the client from the
// offset it has, from NATS when the run is a daemon job (chunks of other
// runs and jobs left out), from host.log otherwise or when NATS skips a
// chunk, lags or fails, and the stream ends with the job's status.
func TestLiveLogStream(t *testing.T) {
	const first = "[pikaci] line 1\n"
	for _, tc := range []struct {
		name   string
		daemon bool
		logs   func() *fakeFollower
		// act runs with the stream open, then the job finishes.
		act  func(t *testing.T, root string, f *fakeFollower, s *sse)
		want string
	}{
		{name: "host.log without a job file", logs: func() *fakeFollower { return &fakeFollower{} },
			act: func(t *testing.T, root string, _ *fakeFollower, s *sse) {
				appendLog(t, root, "line 2\n")
				s.waitText(t, "line 2\n", 5*time.Second)
				// é cut in two writes: the stream sends "line 3 " and
				// holds the first byte back (its event id stops before
				// it) until the second byte is there.
				appendLog(t, root, "line 3 \xc3")
				s.waitText(t, "line 3 ", 5*time.Second)
				if got, want := s.LastID(), int64(len(first+"line 2\nline 3 ")); got != want {
					t.Errorf("event id after the cut %d, want %d (the held byte not counted)", got, want)
				}
				appendLog(t, root, "\xa9\nline 4\n")
			},
			want: "line 2\nline 3 é\nline 4\n"},
		{name: "host.log without a follower", daemon: true,
			act: func(t *testing.T, root string, _ *fakeFollower, s *sse) {
				appendLog(t, root, "line 2\n")
				s.waitText(t, "line 2\n", 5*time.Second)
			},
			want: "line 2\n"},
		{name: "NATS", daemon: true,
			logs: func() *fakeFollower {
				return &fakeFollower{replay: []protocol.LogChunk{chunk(1, first),
					{RunID: "20261125T110000Z-0ther000", Job: "unit_tests", Seq: 1, Data: []byte("another attempt\n")},
					{RunID: liveID, Job: "other", Seq: 1, Data: []byte("another job\n")},
				}, live: make(chan protocol.LogChunk)}
			},
			act: func(t *testing.T, _ string, f *fakeFollower, s *sse) {
				// Not on disk: only NATS has it.
				f.live <- chunk(2, "from nats \xe2\x82")
				f.live <- chunk(3, "\xac\n")
				s.waitText(t, "from nats €\n", 5*time.Second)
			},
			want: "from nats €\n"},
		{name: "a gap in NATS: host.log", daemon: true,
			logs: func() *fakeFollower {
				return &fakeFollower{replay: []protocol.LogChunk{chunk(1, first)}, live: make(chan protocol.LogChunk)}
			},
			act: func(t *testing.T, root string, f *fakeFollower, s *sse) {
				appendLog(t, root, "line 2\n")
				f.live <- chunk(3, "never shown\n")
				s.waitText(t, "line 2\n", 5*time.Second)
			},
			want: "line 2\n"},
		{name: "NATS silent: host.log", daemon: true,
			logs: func() *fakeFollower { return &fakeFollower{live: make(chan protocol.LogChunk)} },
			act: func(t *testing.T, root string, _ *fakeFollower, s *sse) {
				appendLog(t, root, "line 2\n")
				s.waitText(t, "line 2\n", natsLag+3*time.Second)
			},
			want: "line 2\n"},
		{name: "NATS fails: host.log", daemon: true,
			logs: func() *fakeFollower { return &fakeFollower{err: fmt.Errorf("no responders")} },
			act: func(t *testing.T, root string, _ *fakeFollower, s *sse) {
				appendLog(t, root, "line 2\n")
				s.waitText(t, "line 2\n", 5*time.Second)
			},
			want: "line 2\n"},
		{name: "a replay faster than the client: host.log", daemon: true,
			logs: func() *fakeFollower {
				f := &fakeFollower{live: make(chan protocol.LogChunk)}
				f.replay = append(f.replay, chunk(1, first))
				for i := 2; i <= 200; i++ {
					f.replay = append(f.replay, chunk(uint64(i), fmt.Sprintf("line %d\n", i)))
				}
				return f
			},
			act: func(t *testing.T, root string, _ *fakeFollower, s *sse) {
				var b strings.Builder
				for i := 2; i <= 200; i++ {
					fmt.Fprintf(&b, "line %d\n", i)
				}
				appendLog(t, root, b.String())
				s.waitText(t, "line 200\n", 5*time.Second)
			},
			want: func() string {
				var b strings.Builder
				for i := 2; i <= 200; i++ {
					fmt.Fprintf(&b, "line %d\n", i)
				}
				return b.String()
			}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			liveRun(t, root, first, tc.daemon)
			var f *fakeFollower
			var logs LogFollower
			if tc.logs != nil {
				f = tc.logs()
				logs = f
			}
			_, ts := newTestServer(t, root, logs)
			s, resp := openStream(t, streamURL(ts.URL)+"?offset="+strconv.Itoa(len(first)), nil)
			if resp.StatusCode != 200 {
				t.Fatalf("stream: %s", resp.Status)
			}
			tc.act(t, root, f, s)
			writeLive(t, root, model.StatusPassed)
			end := s.waitEnd(t, 5*time.Second)
			if got := s.Text(); got != tc.want {
				t.Errorf("text %q, want %q", got, tc.want)
			}
			if end["status"] != "passed" || end["exit_code"] != float64(0) || end["message"] != "test passed" || end["duration"] != "1m00s" {
				t.Errorf("end event %v", end)
			}
			if f != nil {
				f.mu.Lock()
				defer f.mu.Unlock()
				if tc.daemon && (len(f.jobIDs) != 1 || f.jobIDs[0] != jobUUID) {
					t.Errorf("followed jobs %v, want [%s]", f.jobIDs, jobUUID)
				}
				if !tc.daemon && len(f.jobIDs) != 0 {
					t.Errorf("a run without a job file followed NATS: %v", f.jobIDs)
				}
				if len(f.jobIDs) > 0 && f.err == nil && !f.stopped {
					t.Errorf("the NATS follower was not stopped")
				}
			}
		})
	}
}

// TestLiveLogStreamOnNATS follows the logs stream of a real (in-process)
// NATS server through protocol.Client.
func TestLiveLogStreamOnNATS(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// As the daemon makes it: clients replay it with direct gets.
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: protocol.StreamLogs,
		Subjects: []string{protocol.SubjectLogsPrefix + ">"}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	publish := func(runID string, seq int, data string) {
		t.Helper()
		m := nats.NewMsg(protocol.LogSubject(jobUUID, runID, liveJob))
		m.Header.Set(protocol.HeaderLogSeq, strconv.Itoa(seq))
		m.Data = []byte(data)
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	client, err := protocol.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	const first = "[pikaci] line 1\n"
	liveRun(t, root, first, true)
	publish(liveID, 1, first)
	publish("20261125T110000Z-0ther000", 1, "another attempt\n")
	publish(liveID, 2, "replayed\n")
	_, ts := newTestServer(t, root, client)
	s, resp := openStream(t, streamURL(ts.URL)+"?offset="+strconv.Itoa(len(first)), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %s", resp.Status)
	}
	s.waitText(t, "replayed\n", 5*time.Second)
	publish(liveID, 3, "live\n")
	s.waitText(t, "live\n", 5*time.Second)
	writeLive(t, root, model.StatusPassed)
	s.waitEnd(t, 5*time.Second)
	if got := s.Text(); got != "replayed\nlive\n" {
		t.Errorf("text %q, want the chunks after the offset", got)
	}
}

func TestLogStreamOfAFinishedJob(t *testing.T) {
	root := t.TempDir()
	liveRun(t, root, "a\nb\nc\n", false)
	writeLive(t, root, model.StatusPassed)
	_, ts := newTestServer(t, root, nil)
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		want   string
		lastID int64
	}{
		{"from the start", "", nil, "a\nb\nc\n", 6},
		{"from an offset", "?offset=2", nil, "b\nc\n", 6},
		{"Last-Event-ID wins", "?offset=0", http.Header{"Last-Event-Id": {"4"}}, "c\n", 6},
		{"past the end", "?offset=100", nil, "", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, resp := openStream(t, streamURL(ts.URL)+tc.query, tc.header)
			if resp.StatusCode != 200 {
				t.Fatalf("stream: %s", resp.Status)
			}
			end := s.waitEnd(t, 5*time.Second)
			if s.Text() != tc.want || s.lastID != tc.lastID || end["status"] != "passed" {
				t.Errorf("text %q, last id %d, end %v; want %q, %d, passed", s.Text(), s.lastID, end, tc.want, tc.lastID)
			}
		})
	}
}

func TestLogStreamBadRequests(t *testing.T) {
	root := t.TempDir()
	liveRun(t, root, "a\n", false)
	_, ts := newTestServer(t, root, nil)
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		code   int
		want   string
	}{
		{"negative offset", streamURL(ts.URL) + "?offset=-1", nil, 400, `offset "-1": expected a byte offset, an integer >= 0`},
		{"offset not a number", streamURL(ts.URL) + "?offset=x", nil, 400, `offset "x"`},
		{"bad Last-Event-ID", streamURL(ts.URL), http.Header{"Last-Event-Id": {"1e3"}}, 400, `Last-Event-ID "1e3"`},
		{"unknown job", ts.URL + "/runs/" + liveID + "/jobs/nope/log/stream", nil, 404, "has no job nope"},
		{"unknown run", ts.URL + "/runs/20990101T000000Z-00000000/jobs/x/log/stream", nil, 404, "no run"},
		{"traversal", ts.URL + "/runs/..%2F..%2Fetc/jobs/x/log/stream", nil, 400, "run id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp := openStream(t, tc.url, tc.header)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Errorf("%d %q; want %d containing %q", resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
}

// TestLogStreamLimitsAndClose: streams beyond MaxStreams get 503; Close
// ends the open ones (the server's shutdown does not wait for jobs).
func TestLogStreamLimitsAndClose(t *testing.T) {
	root := t.TempDir()
	liveRun(t, root, "a\n", false)
	s := New(Config{StateRoot: root, Poll: 20 * time.Millisecond, MaxStreams: 1})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { s.Close(); srv.Close() })
	ts := srv.URL
	first, resp := openStream(t, streamURL(ts), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("first stream: %s", resp.Status)
	}
	first.waitText(t, "a\n", 5*time.Second)
	_, resp = openStream(t, streamURL(ts), nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "too many live log streams (1)") {
		t.Errorf("second stream: %d %q, want 503", resp.StatusCode, b)
	}
	s.Close()
	select {
	case <-first.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the stream open")
	}
}

// TestRunPageOfARunningJob: the page of a running job has its log so far
// and what the script needs to follow it from there.
func TestRunPageOfARunningJob(t *testing.T) {
	root := t.TempDir()
	liveRun(t, root, "[pikaci] line 1\n", true)
	_, ts := newTestServer(t, root, nil)
	code, _, body := get(t, ts.URL+"/runs/"+liveID)
	if code != 200 {
		t.Fatalf("GET /runs/%s = %d", liveID, code)
	}
	for _, w := range []string{
		`data-stream="/runs/` + liveID + `/jobs/unit.tests/log/stream" data-offset="16" data-index="0"`,
		`<script src="/static/live.js"></script>`,
		"[pikaci] line 1\n</pre>",
		`id="live-0"`, `id="live-all"`,
		"1m00s so far",
		"1 running",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("the page of a running job lacks %q", w)
		}
	}
	writeLive(t, root, model.StatusPassed)
	_, _, body = get(t, ts.URL+"/runs/"+liveID)
	if strings.Contains(body, "data-stream") || strings.Contains(body, "live.js") {
		t.Errorf("the page of a finished job follows its log")
	}
}

// A page showing a running run that no live stream keeps up to date
// reloads itself; a page with a live stream, or of finished runs, does not.
func TestPagesRefreshWhileNothingStreams(t *testing.T) {
	const refresh = `<meta http-equiv="refresh" content="3">`
	root := t.TempDir()
	liveRun(t, root, "[pikaci] line 1\n", true)
	_, ts := newTestServer(t, root, nil)
	check := func(what, path string, want bool) {
		t.Helper()
		_, _, body := get(t, ts.URL+path)
		if got := strings.Contains(body, refresh); got != want {
			t.Errorf("%s: reloads itself = %t, want %t", what, got, want)
		}
	}
	check("runs list with a running run", "/", true)
	check("run page following its running job", "/runs/"+liveID, false)
	// The job finished, the run not yet (its next job has not started).
	rec, err := run.LoadRun(root, liveID)
	if err != nil {
		t.Fatal(err)
	}
	rec.Jobs[0].Status, rec.Jobs[0].FinishedAt = model.StatusPassed, model.TimestampPtr(fixedNow)
	if err := run.NewStore(root).WriteRun(rec); err != nil {
		t.Fatal(err)
	}
	check("run page between jobs", "/runs/"+liveID, true)
	writeLive(t, root, model.StatusPassed)
	check("runs list, every run finished", "/", false)
	check("run page of a finished run", "/runs/"+liveID, false)
}
