package daemon_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// TestLiveLogsOnNATS follows a running job's output with a plain NATS
// subscription on jerichoci.logs.> and gets every line, in order, in
// chunks numbered from 1 without a gap.
func TestLiveLogsOnNATS(t *testing.T) {
	require(t)
	url := startNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "chatty", Command: `i=1; while [ $i -le 300 ]; do echo "line-$i"; i=$((i+1)); done; sleep 2; echo last-line`})
	d := startDaemon(t, url, "daemon-logs", cat, 1)
	o := newOrchestrator(t, url)
	var mu sync.Mutex
	var got []byte
	var seqs []uint64
	var subjects = map[string]bool{}
	sub, err := o.nc.Subscribe("jerichoci.logs.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Data...)
		seq, _ := strconv.ParseUint(m.Header.Get(protocol.HeaderLogSeq), 10, 64)
		seqs = append(seqs, seq)
		subjects[m.Subject] = true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("chatty"), o.spec(id, "chatty"), id)
	res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
	if res.Status != model.StatusPassed {
		t.Fatalf("job %s: %s %q", id, res.Status, model.Value(res.Message))
	}
	itest.WaitFor(t, "the last line on NATS", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(string(got), "[runner:stdout] last-line\n")
	})
	mu.Lock()
	defer mu.Unlock()
	want := protocol.LogSubject(id, res.RunID, "job")
	if len(subjects) != 1 || !subjects[want] {
		t.Errorf("subjects = %v, want only %s", subjects, want)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("chunk %d has sequence %d: %v", i, s, seqs)
		}
	}
	// Every line, in order: the output lines as host.log has them.
	next := 1
	for _, line := range strings.Split(string(got), "\n") {
		if strings.HasPrefix(line, "[runner:stdout] line-") {
			if line != fmt.Sprintf("[runner:stdout] line-%d", next) {
				t.Fatalf("line %q where line-%d was due", line, next)
			}
			next++
		}
	}
	if next != 301 {
		t.Errorf("got lines 1 to %d, want 1 to 300", next-1)
	}
	host, err := os.ReadFile(jobDir(d.stateRoot, res.RunID, "job") + "/host.log")
	if err != nil {
		t.Fatal(err)
	}
	if string(host) != string(got) {
		t.Errorf("the chunks (%d bytes) are not host.log (%d bytes)", len(got), len(host))
	}
}

// TestEnqueueWaitShowsOutputBeforeTheJobEnds: `enqueue --wait` prints the
// job's first line while the job still runs (no final record yet).
func TestEnqueueWaitShowsOutputBeforeTheJobEnds(t *testing.T) {
	require(t)
	url := startNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "slow-print", Command: "echo first-marker; sleep 8; echo done-marker"})
	startDaemon(t, url, "daemon-wait", cat, 1)
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	cmd := exec.Command(jciBin, "enqueue", "slow-print", "--source", o.src, "--catalog", cat, "--wait", "--job-id", id, "--timeout", "4m")
	cmd.Env = append(os.Environ(), "JERICHOCI_NATS_URL="+url)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	var lines []string
	sawFirst := false
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if strings.Contains(line, "job | [runner:stdout] first-marker") && !sawFirst {
			sawFirst = true
			if r := o.result(t, id); r != nil {
				t.Errorf("the first line came after the final record (%s)", r.Status)
			}
		}
	}
	if !sawFirst {
		t.Fatalf("enqueue --wait never showed the job's output:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.Contains(strings.Join(lines, "\n"), "done-marker") {
		t.Errorf("the last line is missing:\n%s", strings.Join(lines, "\n"))
	}
}

// TestLogsFollowReplaysAndFollowsAJobEnqueuedElsewhere: `jerichoci logs
// --follow JOB_ID` started after the job's first line gets it (replayed
// from the logs stream), then the rest live, then exits with the status.
func TestLogsFollowReplaysAndFollowsAJobEnqueuedElsewhere(t *testing.T) {
	require(t)
	url := startNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "slow-fail", Command: "echo first-marker; sleep 6; echo done-marker; exit 5"})
	startDaemon(t, url, "daemon-follow", cat, 1)
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	first := make(chan struct{})
	var once sync.Once
	sub, err := o.nc.Subscribe(protocol.SubjectLogsPrefix+id+".>", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), "first-marker") {
			once.Do(func() { close(first) })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	o.publish(t, protocol.JobSubject("slow-fail"), o.spec(id, "slow-fail"), id)
	select {
	case <-first:
	case <-time.After(3 * time.Minute):
		t.Fatal("the job's first line never came")
	}
	cmd := exec.Command(jciBin, "logs", "--follow", id)
	cmd.Env = append(os.Environ(), "JERICHOCI_NATS_URL="+url)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	if code != 1 || !strings.Contains(text, "job | [runner:stdout] first-marker") || !strings.Contains(text, "job | [runner:stdout] done-marker") {
		t.Errorf("logs --follow exited %d:\n%s", code, text)
	}
	if strings.Index(text, "first-marker") > strings.Index(text, "done-marker") {
		t.Errorf("lines out of order:\n%s", text)
	}
}
