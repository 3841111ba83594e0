package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushViews renders the pushes of pushRoot and compares each page and
// JSON view with its golden file under testdata/fixtures/web (-update
// rewrites them), then checks what a reader must find in each.
func TestPushViews(t *testing.T) {
	root := pushRoot(t)
	_, ts := newTestServer(t, root, nil)
	tests := []struct {
		path   string
		golden string
		code   int
		want   []string
	}{
		{"/pushes/push-4eef499-186", "push-186.golden.html", 200, []string{
			"Run #186 failed · 9 passed 1 failed · head 4eef499 · queued 2026-11-25 09:00:00 UTC · 10 lane(s) · queued 8.0s · ran 2m43s",
			">check-pika-followup</a>", "<b>test failed</b> exit 101 in pika-followup", "attempt 2 (1 handed back)"}},
		{"/api/pushes/push-4eef499-186", "push-186.golden.json", 200, []string{`"number": 186`, `"word": "test failed"`, `"attempts": 2`}},
		{"/pushes/push-1a2b3c4-150", "push-150.golden.html", 200, []string{
			"<b>timed out</b> timed out after 1800s", "<b>cancelled</b>", "<b>refused</b> policy: host jobs",
			"<b>never ran</b> unknown job `check-pika-rsut`"}},
		{"/?status=failed", "runs-failed.golden.html", 200, []string{"Latest run #186", "Run #150"}},
		{"/api/pushes?lane=check-pika-rust", "pushes-lane.golden.json", 200, []string{`"lane": "check-pika-rust"`}},
		{"/runs/20261125T090014Z-18600006", "run-failed.golden.html", 200, []string{
			`<span class="stderr">[runner:stderr] thread`, `data-focus="1"`, `push #186`}},
		{"/runs/20261125T090030Z-18600002-a2", "run-attempts.golden.html", 200, []string{"attempts of this job:", "(infrastructure)"}},
		{"/pushes/push-4eef499-186/badge.svg", "push-186-badge.golden.svg", 200, []string{"#186 failed"}},
		{"/lanes/check-pika-followup/badge.svg", "lane-badge.golden.svg", 200, []string{"failed: test failed"}},
		{"/api/lanes/check-notifications", "lane-notifications.golden.json", 200, []string{`"status": "passed"`, `"earlier_runs"`}},
		{"/?status=bogus", "", 200, []string{"query parameter `status` &#34;bogus&#34;: expected one of running, passed, failed, skipped, queued"}},
		{"/pushes/no-such-push", "", 404, []string{"no push no-such-push"}},
	}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			code, _, body := get(t, ts.URL+tc.path)
			if code != tc.code {
				t.Fatalf("GET %s = %d, want %d:\n%s", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s lacks %q", tc.path, w)
				}
			}
			if tc.golden == "" {
				return
			}
			body = strings.ReplaceAll(body, root, "<state>")
			p := filepath.Join(fixtures, "web", tc.golden)
			if *update {
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if body != string(want) {
				t.Errorf("GET %s differs from %s (go test -run TestPushViews -update rewrites it):\n%s", tc.path, p, body)
			}
		})
	}
}

// TestWhy: each way a record fails has its word.
func TestWhyPrepareNode(t *testing.T) {
	tests := []struct{ msg, word, line string }{
		{"prepare node `prepare-pika-workspace-build` failed before execute: staged prepare `ci.x86_64-linux.workspaceBuild` failed with Some(1); see /var/lib/runs/r1/jobs/a/host.log",
			whyBuild, "nix build of ci.x86_64-linux.workspaceBuild exited 1 (prepare node prepare-pika-workspace-build; its log is in host.log)"},
		{"prepare node `prepare-pika-workspace-deps` failed before execute: staged prepare `ci.x86_64-linux.workspaceDeps` failed with None; see /tmp/h.log",
			whyBuild, "nix build of ci.x86_64-linux.workspaceDeps was killed (no exit code) (prepare node prepare-pika-workspace-deps; its log is in host.log)"},
		{"not run because prepare phase stopped after `prepare-a-workspace-build` failed: staged prepare `out` failed with Some(101); see /x",
			whyBuild, "nix build of out exited 101 (prepare node prepare-a-workspace-build; its log is in host.log)"},
		{"prepare node `prepare-a-runner` failed before execute: image `pikaci/dev` not found",
			whyPrepare, "prepare node prepare-a-runner: image `pikaci/dev` not found"},
		{"prepare node `odd", whyPrepare, "prepare node `odd"},
	}
	for _, tc := range tests {
		w := whyMessage(tc.msg, 0)
		if w == nil || w.Word != tc.word || w.Line != tc.line {
			t.Errorf("whyMessage(%q) = %+v, want {%s %s}", tc.msg, w, tc.word, tc.line)
		}
		if w != nil && (strings.Contains(w.Line, "Some(") || strings.Contains(w.Line, "; see /")) {
			t.Errorf("whyMessage(%q).Line = %q: the original's spelling or the path leaked", tc.msg, w.Line)
		}
	}
}

func TestWhy(t *testing.T) {
	tests := []struct{ msg, word string }{
		{"cancelled", whyCancel},
		{"timed out after 120s", whyTimeout},
		{"unknown job `demo-pas`", whyNeverRan},
		{"host-local job refused: this daemon runs host_shell commands on the worker itself only when started with --allow-host-jobs", whyRefused},
		{"refused: this daemon builds staged outputs (the Nix flake of the job's source, on the worker host) only when started with --allow-staged-builds", whyRefused},
		{"source refused: symlink `a` leaves the tree", whyRefused},
		{"infrastructure error on the last delivery (5 of 5), giving up: boom", whyInfra},
		{"gave up: the job was delivered 5 times and no worker finished it (its last worker stopped answering)", whyInfra},
		{"interrupted: the daemon stopped while the job ran; the job goes back to the queue", whyInfra},
		{"prepare node `x` failed", whyPrepare},
		{"something else failed", ""},
	}
	for _, tc := range tests {
		w := whyMessage(tc.msg, 2)
		got := ""
		if w != nil {
			got = w.Word
		}
		if got != tc.word {
			t.Errorf("whyMessage(%q) = %q, want %q", tc.msg, got, tc.word)
		}
		if got == whyInfra && !strings.HasPrefix(w.Line, "retried: 2 · ") {
			t.Errorf("whyMessage(%q).Line = %q, want it to start with the retries", tc.msg, w.Line)
		}
	}
}
