package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

const secretValue = "s3cr3t-Value-42"

// secretExec writes the secret it was given to the host log and puts it in
// its result message, as a careless job would.
type secretExec struct {
	mu  sync.Mutex
	got map[string]map[string]string
}

func (s *secretExec) Execute(_ context.Context, job executor.Job) (executor.Result, error) {
	s.mu.Lock()
	if s.got == nil {
		s.got = map[string]map[string]string{}
	}
	s.got[job.ID] = job.SecretEnv
	s.mu.Unlock()
	fmt.Fprintf(job.HostLog, "[runner:stdout] token=%s\n", job.SecretEnv["API_TOKEN"])
	return executor.Result{Status: model.StatusFailed, ExitCode: new(int32),
		Message: "command printed " + job.SecretEnv["API_TOKEN"]}, nil
}

func secretJob(id string, names ...string) PlannedJob {
	j := incusJob(id)
	j.SecretEnv = names
	return j
}

func TestSecretEnvMaskedEverywhere(t *testing.T) {
	ex := &secretExec{}
	r, s := newRunner(t, ex, map[string]string{"API_TOKEN": secretValue})
	var live bytes.Buffer
	var liveMu sync.Mutex
	r.opt.JobOutput = func(string) io.Writer { return lockedBuf{&liveMu, &live} }
	rec, err := r.Run(t.Context(), plan(t, secretJob("a", "API_TOKEN")))
	if err != nil {
		t.Fatal(err)
	}
	if got := ex.got["a"]["API_TOKEN"]; got != secretValue {
		t.Fatalf("the executor got secret_env %q, want the worker's value", got)
	}
	if m := model.Value(rec.Jobs[0].Message); m != "command printed [MASKED]" {
		t.Errorf("job message = %q", m)
	}
	host, _ := os.ReadFile(rec.Jobs[0].HostLogPath)
	if !strings.Contains(string(host), "token=[MASKED]\n") {
		t.Errorf("host.log = %q", host)
	}
	liveMu.Lock()
	if !strings.Contains(live.String(), "token=[MASKED]\n") || strings.Contains(live.String(), secretValue) {
		t.Errorf("live output = %q", live.String())
	}
	liveMu.Unlock()
	evs, _ := json.Marshal(s.evs)
	if bytes.Contains(evs, []byte(secretValue)) {
		t.Errorf("an event holds the secret: %s", evs)
	}
	checkNoSecretUnder(t, r.StateRoot)
}

// checkNoSecretUnder fails when a file under root holds secretValue.
func checkNoSecretUnder(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secretValue)) {
			t.Errorf("%s holds the secret value", p)
		}
		return nil
	})
}

func TestSecretEnvRefused(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		allowed []string // nil: every name
		want    string
	}{
		{"not set", nil, nil, "secret_env `API_TOKEN` is not set in the worker's environment"},
		{"not allowed", map[string]string{"API_TOKEN": secretValue}, []string{"OTHER"},
			"secret_env `API_TOKEN` is not one this worker passes to jobs (serve --secret-env lists those)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex := &fakeExec{}
			r, _ := newRunner(t, ex, tc.env)
			if tc.allowed != nil {
				r.SecretEnvAllowed = func(n string) bool { return strings.Contains(","+strings.Join(tc.allowed, ",")+",", ","+n+",") }
			}
			rec, err := r.Run(t.Context(), plan(t, secretJob("a", "API_TOKEN"), incusJob("b")))
			if err != nil {
				t.Fatal(err)
			}
			if rec.Status != model.StatusFailed || model.Value(rec.Jobs[0].Message) != tc.want || rec.Jobs[1].Status != model.StatusSkipped {
				t.Errorf("record: %s; jobs %s %q, %s", rec.Status, rec.Jobs[0].Status, model.Value(rec.Jobs[0].Message), rec.Jobs[1].Status)
			}
			if len(ex.ran) != 0 {
				t.Errorf("the executor ran %v", ex.ran)
			}
			host, _ := os.ReadFile(rec.Jobs[0].HostLogPath)
			if !strings.Contains(string(host), "[pikaci] "+tc.want+"\n") {
				t.Errorf("host.log = %q", host)
			}
			checkNoSecretUnder(t, r.StateRoot)
		})
	}
}

type lockedBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
