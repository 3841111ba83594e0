package main

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"jerichoci/model"
)

// hostile is the payload: set the title, clear the screen, go up a
// line and overwrite it; then a C1 CSI, as a character and as a stray byte.
const (
	hostileUTF8 = "\x1b]0;x\a\x1b[2J\x1b[1A\rfake \u009b2J "
	hostile     = hostileUTF8 + "\x9b2J"
)

// stateWithHostileRun lays out a run whose record, host.log and guest.log
// hold terminal sequences, as a run written before host.log was made safe
// (or a record copied from elsewhere) would.
func stateWithHostileRun(t *testing.T) (root, runID string) {
	t.Helper()
	root = t.TempDir()
	runID = "20260319T010203Z-0badc0de"
	dir := filepath.Join(root, "runs", runID)
	jobDir := filepath.Join(dir, "jobs", "evil")
	if err := os.MkdirAll(filepath.Join(jobDir, "artifacts"), 0o755); err != nil {
		t.Fatal(err)
	}
	msg, target := "failed: "+hostile, "target"+hostile
	rec := model.RunRecord{RunID: runID, Status: model.StatusFailed, TargetID: &target, Message: &msg,
		Jobs: []model.JobRecord{{ID: "evil", Status: model.StatusFailed, Message: &msg,
			HostLogPath:  filepath.Join(jobDir, "host.log"),
			GuestLogPath: filepath.Join(jobDir, "artifacts", "guest.log")}}}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string]string{
		filepath.Join(dir, "run.json"):                  string(b),
		filepath.Join(jobDir, "host.log"):               "[runner:stdout] " + hostile + "\n",
		filepath.Join(jobDir, "artifacts", "guest.log"): hostile + "\n",
	} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, runID
}

// checkTerminalSafe fails when out holds a byte a terminal acts on.
func checkTerminalSafe(t *testing.T, name, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s is not valid UTF-8: %q", name, out)
	}
	for _, r := range out {
		if r < 0x20 && r != '\t' && r != '\n' || r >= 0x7f && r <= 0x9f {
			t.Errorf("%s holds %U:\n%q", name, r, out)
			return
		}
	}
}

// TestPrintedOutputIsSafeForTerminals runs each command that prints a
// record or a log of a hostile run: nothing it prints on stdout or stderr
// holds a control character, and the escaped payload is there to read.
func TestPrintedOutputIsSafeForTerminals(t *testing.T) {
	root, id := stateWithHostileRun(t)
	// In the logs the stray byte is \x9b; in records json.Marshal made it U+FFFD.
	escaped := `\u001b]0;x\u0007\u001b[2J\u001b[1A\u000dfake \u009b2J `
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"runs", "logs", id}, escaped + `\x9b2J`},
		{[]string{"runs", "logs", id, "evil", "--guest"}, escaped + `\x9b2J`},
		{[]string{"logs", id}, escaped + `\x9b2J`},
		{[]string{"runs", "show", id}, escaped + "\uFFFD2J"},
		{[]string{"status", id}, escaped + "\uFFFD2J"},
		{[]string{"runs", "list"}, "target" + escaped},
		{[]string{"list"}, "target" + escaped},
		{[]string{"runs", "logs", id, "no\x1b[2Jjob"}, "job `no\\u001b[2Jjob` not found"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, _ := runCLI(t, append([]string{"--state-root", root}, tc.args...)...)
			checkTerminalSafe(t, "stdout", out)
			checkTerminalSafe(t, "stderr", errs)
			if !strings.Contains(out+errs, tc.want) {
				t.Errorf("the output lacks %s:\n%s%s", tc.want, out, errs)
			}
		})
	}
	// JSON output stays valid JSON and says the same.
	for _, args := range [][]string{{"runs", "show", id, "--json"}, {"status", id, "--json"}} {
		out, errs, code := runCLI(t, append([]string{"--state-root", root}, args...)...)
		checkTerminalSafe(t, strings.Join(args, " "), out)
		var rec model.RunRecord
		if err := json.Unmarshal([]byte(out), &rec); code != 0 || err != nil {
			t.Fatalf("%v: exit %d, %v\n%s%s", args, code, err, out, errs)
		}
		// json.Marshal made the stray byte U+FFFD; the rest is as written.
		if want := "failed: " + hostileUTF8 + "\uFFFD2J"; model.Value(rec.Message) != want {
			t.Errorf("%v: message %q, want %q", args, model.Value(rec.Message), want)
		}
	}
	// The files keep their bytes: artifacts are evidence.
	if b, _ := os.ReadFile(filepath.Join(root, "runs", id, "jobs", "evil", "artifacts", "guest.log")); string(b) != hostile+"\n" {
		t.Errorf("guest.log changed: %q", b)
	}
}

// parseServe is serve's configuration from env and args, validated.
func parseServe(t *testing.T, env map[string]string, args ...string) (serveConfig, error) {
	t.Helper()
	c := defaultServeConfig()
	c.fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	c.finish()
	return c, c.Validate()
}

// parseExec is the executor settings from env and args, validated.
func parseExec(t *testing.T, env map[string]string, args ...string) (execConfig, error) {
	t.Helper()
	c := defaultExecConfig()
	c.fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c, c.Validate()
}

func TestServeHTTPAllowedHosts(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string // the names, comma-joined
		wantErr string
	}{
		{name: "none by default"},
		{name: "from the environment", env: map[string]string{"JERICHOCI_HTTP_ALLOWED_HOSTS": "ci.example.org, 10.0.0.5"}, want: "ci.example.org,10.0.0.5"},
		{name: "repeated flags replace the environment's", env: map[string]string{"JERICHOCI_HTTP_ALLOWED_HOSTS": "a.example"},
			args: []string{"--http-allowed-host", "b.example", "--http-allowed-host", "c.example,d.example"}, want: "b.example,c.example,d.example"},
		{name: "a port is refused", args: []string{"--http-allowed-host", "ci.example.org:4280"},
			wantErr: `--http-allowed-host (env JERICHOCI_HTTP_ALLOWED_HOSTS): allowed host "ci.example.org:4280": expected a host name or IP address, without port or scheme`},
		{name: "a URL is refused", env: map[string]string{"JERICHOCI_HTTP_ALLOWED_HOSTS": "http://ci"},
			wantErr: `allowed host "http://ci": expected a host name or IP address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseServe(t, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Validate: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(c.httpAllowedHosts, ","); got != tc.want {
				t.Errorf("allowed hosts %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServeResultsLimits(t *testing.T) {
	c, err := parseServe(t, nil)
	if err != nil || c.daemon.UnrunResultTTL != time.Hour || c.queue.ResultsMaxBytes != 1<<30 {
		t.Errorf("defaults: unrun %s, max bytes %d (%v); want 1h, 1 GiB", c.daemon.UnrunResultTTL, c.queue.ResultsMaxBytes, err)
	}
	c, err = parseServe(t, map[string]string{"JERICHOCI_KEEP_UNRUN_RESULTS": "10m", "JERICHOCI_RESULTS_MAX_BYTES": "256MiB"})
	if err != nil || c.daemon.UnrunResultTTL != 10*time.Minute || c.queue.ResultsMaxBytes != 256<<20 {
		t.Errorf("env: unrun %s, max bytes %d (%v)", c.daemon.UnrunResultTTL, c.queue.ResultsMaxBytes, err)
	}
	c, err = parseServe(t, map[string]string{"JERICHOCI_KEEP_UNRUN_RESULTS": "10m"}, "--keep-unrun-results", "5s", "--results-max-bytes", "2MiB")
	if err != nil || c.daemon.UnrunResultTTL != 5*time.Second || c.queue.ResultsMaxBytes != 2<<20 {
		t.Errorf("flags over env: unrun %s, max bytes %d (%v)", c.daemon.UnrunResultTTL, c.queue.ResultsMaxBytes, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--keep-unrun-results", "500ms"}, "unrun result ttl 500ms: must be at least 1s"},
		{[]string{"--keep-unrun-results", "3h", "--keep-results", "2h"}, "--keep-unrun-results 3h0m0s (env JERICHOCI_KEEP_UNRUN_RESULTS): expected at most --keep-results 2h0m0s"},
		{[]string{"--results-max-bytes", "1KiB"}, "results max bytes 1024: must be at least one record's limit, 1048576"},
	} {
		if _, err := parseServe(t, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
