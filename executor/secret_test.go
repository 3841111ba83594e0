package executor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/internal/mask"
)

// A job's secrets go into the guest in a root-only file the request names,
// and are masked in everything the host keeps: host.log, the live
// guest.log, the collected guest.log, the small artifacts and the result
// message, also where the runner's output splits a value across writes.
func TestExecuteSecretEnv(t *testing.T) {
	const secret = "tok-SECRET-123456"
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"},
		result: `{"schema_version":1,"status":"failed","exit_code":1,"finished_at":"2026-03-19T01:09:40+00:00","message":"leaked ` + secret + `"}`,
		output: func(stdout, stderr io.Writer) {
			fmt.Fprint(stdout, "token=tok-SEC")
			fmt.Fprint(stdout, "RET-123456 and again "+secret[:3])
			fmt.Fprint(stdout, secret[3:]+"\n")
			fmt.Fprint(stderr, secret)
		},
		guestFiles: map[string]string{
			GuestDir + "/logs/guest.log": "guest says " + secret + "\n",
			GuestDir + "/events.jsonl":   `{"message":"` + secret + `"}` + "\n",
		},
		runnerCode: 1,
	}
	var log syncBuf
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
	x.Config.Owner = "worker-1"
	job := newJob(t, &log)
	job.SecretEnv = map[string]string{"API_TOKEN": secret}
	job.Mask = mask.New(secret)
	res, err := x.Execute(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Message != "leaked [MASKED]" {
		t.Errorf("message = %q", res.Message)
	}
	var env map[string]string
	if err := json.Unmarshal(be.files[GuestSecretEnvPath], &env); err != nil || env["API_TOKEN"] != secret {
		t.Errorf("secret env file = %s (%v)", be.files[GuestSecretEnvPath], err)
	}
	req := string(be.files[GuestRequestPath])
	if !strings.Contains(req, `"secret_env_file": "`+GuestSecretEnvPath+`"`) || strings.Contains(req, secret) {
		t.Errorf("guest request = %s", req)
	}
	hl := log.String()
	for _, want := range []string{"[runner:stdout] token=[MASKED] and again [MASKED]\n", "[runner:stderr] [MASKED]\n",
		"passing secret_env API_TOKEN into the guest"} {
		if !strings.Contains(hl, want) {
			t.Errorf("host log lacks %q:\n%s", want, hl)
		}
	}
	if strings.Contains(hl, secret) {
		t.Errorf("host log holds the secret:\n%s", hl)
	}
	if b, _ := os.ReadFile(filepath.Join(job.JobDir, "artifacts", "guest.log")); string(b) != "guest says [MASKED]\n" {
		t.Errorf("collected guest.log = %q", b)
	}
	filepath.WalkDir(job.JobDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the secret", p)
			}
		}
		return err
	})
}

// The live guest.log (before the guest's own is collected) is masked too.
func TestRunnerOutputMaskedLive(t *testing.T) {
	const secret = "abcdefgh"
	var host, raw bytes.Buffer
	o := &runnerOutput{host: &host, raw: &raw, hostCap: -1}
	w := mask.New(secret).Writer(o.writer("P "))
	for _, part := range []string{"x abc", "defg", "h y\n"} {
		w.Write([]byte(part))
	}
	mask.Flush(w)
	if raw.String() != "x [MASKED] y\n" || host.String() != "P x [MASKED] y\n" {
		t.Errorf("raw %q, host %q", raw.String(), host.String())
	}
}

// BenchmarkRunnerOutput is the runner's output path (stream → prefixed
// host lines + raw log), without secrets (the baseline) and with two
// masked values in front of it, on 64 KiB reads of 17-byte lines.
func BenchmarkRunnerOutput(b *testing.B) {
	chunk := bytes.Repeat([]byte("0123456789abcdef\n"), 64<<10/17)
	for _, bc := range []struct {
		name string
		s    *mask.Secrets
	}{{"baseline-no-secrets", nil}, {"two-secrets", mask.New("tok-SECRET-123456", "another-secret-value")}} {
		b.Run(bc.name, func(b *testing.B) {
			o := &runnerOutput{host: io.Discard, raw: io.Discard, hostCap: -1}
			w := bc.s.Writer(o.writer("[runner:stdout] "))
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				w.Write(chunk)
			}
		})
	}
}
