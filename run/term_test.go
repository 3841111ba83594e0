package run

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

// termExec writes hostile terminal sequences to the host log in pieces: the
// issue's payload, a secret holding an ESC, and a C1 CSI cut between two
// writes.
type termExec struct{ secret string }

func (e termExec) Execute(_ context.Context, job executor.Job) (executor.Result, error) {
	for _, p := range []string{
		"[runner:stdout] \x1b]0;x\a\x1b[2J\x1b[1A\rfake\n",
		"[runner:stdout] token=" + e.secret + "\n", // whole: executors mask their streams before cutting lines
		"[runner:stdout] c1=\xc2", "\x9b2J\n",
		"[runner:stdout] cut at the end \xe2\x9c",
	} {
		if _, err := io.WriteString(job.HostLog, p); err != nil {
			return executor.Result{}, err
		}
	}
	return executor.Result{Status: model.StatusPassed, ExitCode: new(int32)}, nil
}

// TestHostLogIsSafeForTerminals: host.log and the live copy get no control
// byte but tab and newline; masking comes first, so a secret holding an
// ESC is still masked.
func TestHostLogIsSafeForTerminals(t *testing.T) {
	secret := "tok\x1b[1Aen\r" // control bytes inside the value
	r, _ := newRunner(t, termExec{secret: secret}, map[string]string{"API_TOKEN": secret})
	var live bytes.Buffer
	var liveMu sync.Mutex
	r.opt.JobOutput = func(string) io.Writer { return lockedBuf{&liveMu, &live} }
	rec, err := r.Run(t.Context(), plan(t, secretJob("a", "API_TOKEN")))
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile(rec.Jobs[0].HostLogPath)
	if err != nil {
		t.Fatal(err)
	}
	liveMu.Lock()
	defer liveMu.Unlock()
	for name, b := range map[string][]byte{"host.log": host, "live output": live.Bytes()} {
		for _, c := range b {
			if c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
				t.Errorf("%s holds byte %#x:\n%q", name, c, b)
				break
			}
		}
		if bytes.Contains(b, []byte("\u009b")) || bytes.Contains(b, []byte("\x9b2J")) {
			t.Errorf("%s holds a C1 CSI: %q", name, b)
		}
		for _, want := range []string{
			`[runner:stdout] \u001b]0;x\u0007\u001b[2J\u001b[1A\u000dfake` + "\n",
			"[runner:stdout] token=[MASKED]\n",
			`[runner:stdout] c1=\u009b2J` + "\n",
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s lacks %q:\n%s", name, want, b)
			}
		}
		if bytes.Contains(b, []byte("tok\\u001b")) || bytes.Contains(b, []byte("tok\x1b")) {
			t.Errorf("%s holds the secret's start: %q", name, b)
		}
	}
	// The cut rune at the very end is written, escaped, when the log closes.
	if !bytes.HasSuffix(host, []byte(`cut at the end \xe2\x9c`)) {
		t.Errorf("host.log does not end with the escaped cut rune: %q", host)
	}
}
