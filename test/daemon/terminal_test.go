package daemon_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// hostileOutput is a job printing the payload (set the title,
// clear the screen, go up a line, back to its start, "fake"), then a C1
// CSI as a UTF-8 character and as a stray byte, in printf's octal.
const hostileOutput = `printf '\033]0;x\a\033[2J\033[1A\rfake\n'; printf 'c1=\302\2332J raw=\2332J\n'; echo end`

// escapedPayload is the first line as termsafe prints it.
const escapedPayload = `\u001b]0;x\u0007\u001b[2J\u001b[1A\u000dfake`

// checkNoControl fails when out holds a byte a terminal acts on: a C0
// control but tab and newline, DEL, a C1 character, or invalid UTF-8 (a
// stray C1 byte among them).
func checkNoControl(t *testing.T, name string, out []byte) {
	t.Helper()
	if !utf8.Valid(out) {
		t.Errorf("%s is not valid UTF-8 (a stray byte reached it):\n%q", name, out)
	}
	for _, r := range string(out) {
		if r < 0x20 && r != '\t' && r != '\n' || r >= 0x7f && r <= 0x9f {
			t.Errorf("%s holds %U:\n%q", name, r, out)
			return
		}
	}
}

// runCmd runs jerichoci with args and env added to the test's; it returns
// stdout and stderr apart, and the exit code.
func runCmd(t *testing.T, env []string, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	cmd := exec.Command(jciBin, args...)
	cmd.Env = append(itest.CleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v\n%s", cmd.Args, err, errb.Bytes())
	}
	return out.Bytes(), errb.Bytes(), code
}

// TestJobOutputCannotDriveTheTerminal runs a job printing terminal
// sequences on the real daemon (separate nats-server, real incusd) and
// reads its output every way a person does: `enqueue --wait`, `logs
// --follow`, `runs logs`, `logs`, `status` and a local `jerichoci run`.
// None prints an ESC, CR, BEL, C1 character or stray byte; each shows the
// payload escaped. host.log on disk is escaped too; guest.log keeps the
// job's raw bytes (artifacts are evidence).
func TestJobOutputCannotDriveTheTerminal(t *testing.T) {
	require(t)
	cat := writeCatalogWith(t, catalogJob{Target: "hostile-term", Command: hostileOutput})
	url := startNATS(t)
	d := startDaemon(t, url, "daemon-term", cat, 1)
	o := newOrchestrator(t, url)
	natsEnv := []string{"JERICHOCI_NATS_URL=" + url}

	out, errs, code := runCmd(t, natsEnv, "enqueue", "hostile-term", "--source", o.src, "--catalog", cat, "--wait", "--timeout", "4m")
	if code != 0 {
		t.Fatalf("enqueue --wait: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	checkNoControl(t, "enqueue --wait's stdout", out)
	checkNoControl(t, "enqueue --wait's stderr", errs)
	if !bytes.Contains(out, []byte("job | [runner:stdout] "+escapedPayload+"\n")) ||
		!bytes.Contains(out, []byte(`c1=\u009b2J raw=\x9b2J`)) {
		t.Errorf("enqueue --wait does not show the escaped output:\n%s", out)
	}
	first := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if len(first) < 2 || first[0] != "job" {
		t.Fatalf("enqueue output does not start with the job id:\n%s", out)
	}
	id := first[1]
	res := o.result(t, id)
	if res == nil || res.Status != model.StatusPassed {
		t.Fatalf("job %s: %+v, want a passed record", id, res)
	}

	// The files: host.log escaped, guest.log raw.
	dir := jobDir(d.stateRoot, res.RunID, "job")
	host, err := os.ReadFile(filepath.Join(dir, "host.log"))
	if err != nil {
		t.Fatal(err)
	}
	checkNoControl(t, "host.log", host)
	if !bytes.Contains(host, []byte("[runner:stdout] "+escapedPayload+"\n")) {
		t.Errorf("host.log lacks the escaped line:\n%s", host)
	}
	guest, err := os.ReadFile(filepath.Join(dir, "artifacts", "guest.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(guest, []byte("\x1b]0;x\a\x1b[2J\x1b[1A\rfake\n")) || !bytes.Contains(guest, []byte("c1=\xc2\x9b2J raw=\x9b2J\n")) {
		t.Errorf("guest.log does not keep the raw bytes:\n%q", guest)
	}
	checkNoControl(t, "the daemon's log", []byte(d.log.String()))

	// Every way to read it again.
	stateEnv := []string{"PIKACI_STATE_ROOT=" + d.stateRoot}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"logs --follow", natsEnv, []string{"logs", "--follow", id}},
		{"runs logs", stateEnv, []string{"runs", "logs", res.RunID}},
		{"runs logs --guest", stateEnv, []string{"runs", "logs", res.RunID, "job", "--guest"}},
		{"logs", stateEnv, []string{"logs", res.RunID}},
		{"status", stateEnv, []string{"status", res.RunID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCmd(t, tc.env, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			checkNoControl(t, "stdout", out)
			checkNoControl(t, "stderr", errs)
			if tc.name != "status" && !bytes.Contains(out, []byte(escapedPayload+"\n")) {
				t.Errorf("the output lacks the escaped line:\n%s", out)
			}
		})
	}

	t.Run("jerichoci run", func(t *testing.T) {
		state := t.TempDir()
		owner := "term-run-" + uuid.NewString()[:8]
		out, errs, code := runCmd(t, []string{"JERICHOCI_OWNER=" + owner},
			"run", "hostile-term", "--catalog", cat, "--source", o.src, "--state-root", state)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
		checkNoControl(t, "stdout", out)
		checkNoControl(t, "stderr", errs)
		if !bytes.Contains(out, []byte("job | [runner:stdout] "+escapedPayload+"\n")) {
			t.Errorf("jerichoci run does not show the escaped line:\n%s", out)
		}
	})
}

// TestSourceFileNamesAreEscapedWhereverPrinted: a tarball whose refused
// entry's name holds terminal sequences. The final record's message names
// it; `logs --follow`, `status` and `runs logs` print it escaped, and
// host.log holds no control byte. An accepted file with such a name that
// the job lists shows up escaped on `logs --follow` too.
func TestSourceFileNamesAreEscapedWhereverPrinted(t *testing.T) {
	require(t)
	cat := writeCatalogWith(t, catalogJob{Target: "list-files", Command: `cd /workspace/snapshot && printf "%s\n" *`})
	url := startNATS(t)
	d := startDaemon(t, url, "daemon-term-names", cat, 1)
	o := newOrchestrator(t, url)
	natsEnv := []string{"JERICHOCI_NATS_URL=" + url}
	evil := "evil\x1b]0;x\a\x1b[2J\r\u009b"
	refused, listed := uuid.NewString(), uuid.NewString()
	src := o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("hi\n")), symlinkEntry(evil, "/etc/passwd")))
	o.publish(t, protocol.JobSubject("list-files"), specWith(t, refused, "list-files", src, nil), refused)
	src = o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("hi\n")), regEntry(evil, []byte("x\n"))))
	o.publish(t, protocol.JobSubject("list-files"), specWith(t, listed, "list-files", src, nil), listed)
	res := o.waitResults(t, []string{refused, listed}, 3*time.Minute)
	checkRefused(t, refused, res[refused], "source refused: ", []string{evil})
	if res[listed].Status != model.StatusPassed {
		t.Fatalf("job %s listing the files: %s %q", listed, res[listed].Status, model.Value(res[listed].Message))
	}
	for _, id := range []string{refused, listed} {
		out, errs, _ := runCmd(t, natsEnv, "logs", "--follow", id)
		checkNoControl(t, "logs --follow "+id+": stdout", out)
		checkNoControl(t, "logs --follow "+id+": stderr", errs)
		if !bytes.Contains(append(out, errs...), []byte(`evil\u001b]0;x\u0007\u001b[2J\u000d\u009b`)) &&
			!bytes.Contains(append(out, errs...), []byte(`evil\x1b]0;x\a\x1b[2J\r\u009b`)) { // a %q in the message
			t.Errorf("logs --follow %s does not name the file escaped:\nstdout:\n%s\nstderr:\n%s", id, out, errs)
		}
	}
	stateEnv := []string{"PIKACI_STATE_ROOT=" + d.stateRoot}
	for _, id := range []string{refused, listed} {
		r := res[id]
		out, errs, _ := runCmd(t, stateEnv, "status", r.RunID)
		checkNoControl(t, "status: stdout", out)
		checkNoControl(t, "status: stderr", errs)
		out, errs, _ = runCmd(t, stateEnv, "runs", "logs", r.RunID)
		checkNoControl(t, "runs logs: stdout", out)
		checkNoControl(t, "runs logs: stderr", errs)
		for _, j := range r.Jobs {
			if b, err := os.ReadFile(j.HostLogPath); err == nil {
				checkNoControl(t, "host.log of "+id, b)
			}
		}
	}
}
