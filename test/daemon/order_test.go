package daemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// Output in the order it was written (docs/INCUS.md, "Output order"): a
// job that interleaves 1,000 lines on stdout and stderr shows them in
// exactly the order it wrote them in artifacts/guest.log, host.log, the
// live log chunks on NATS, `enqueue --wait`, `logs --follow` and the
// page's log stream, through the real daemon and incusd: on fresh
// instances (--warm 0), on the warm pool (--warm 1) and as a host-local
// job. Each test runs the job orderRounds (20) times in a row and stops at
// the first round that fails; nothing is timed.

// orderRounds is how many times in a row each test runs the job.
const orderRounds = 20

// orderCommand writes "out N" to stdout and "err N" to stderr, N = 1…1000.
const orderCommand = `for i in $(seq 1000); do echo "out $i"; echo "err $i" >&2; done`

// orderLines is how many lines orderCommand writes.
const orderLines = 2000

// orderWant is the i-th line (from 0) orderCommand writes.
func orderWant(i int) string {
	if i%2 == 0 {
		return fmt.Sprintf("out %d", i/2+1)
	}
	return fmt.Sprintf("err %d", i/2+1)
}

// orderProblem checks that the lines of text starting with prefix and then
// "out " or "err " are orderCommand's 2,000 lines in its order; other
// lines (the executor's, the runner's) are passed over. It returns what is
// wrong, or "".
func orderProblem(text, prefix string) string {
	next := 0
	for n, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok || !(strings.HasPrefix(rest, "out ") || strings.HasPrefix(rest, "err ")) {
			continue
		}
		if next >= orderLines {
			return fmt.Sprintf("line %d %q after all %d lines", n+1, line, orderLines)
		}
		if want := orderWant(next); rest != want {
			return fmt.Sprintf("line %d %q where %q was due (%d lines in order before it)", n+1, line, prefix+want, next)
		}
		next++
	}
	if next != orderLines {
		return fmt.Sprintf("%d of the %d lines, then the end (the next due was %q)", next, orderLines, prefix+orderWant(next))
	}
	return ""
}

// TestOrderProblemCanFail: the checker refuses a swapped pair, a missing
// line, two lines run together and a wrong prefix, and accepts the
// command's own output among other lines.
func TestOrderProblemCanFail(t *testing.T) {
	var good strings.Builder
	good.WriteString("[pikaci] before\n")
	for i := range orderLines {
		good.WriteString("P " + orderWant(i) + "\n")
	}
	good.WriteString("P [pikaci] after\n")
	swapped := strings.Replace(good.String(), "P out 7\nP err 7\n", "P err 7\nP out 7\n", 1)
	missing := strings.Replace(good.String(), "P err 500\n", "", 1)
	together := strings.Replace(good.String(), "P out 9\nP err 9\n", "P out 9P err 9\n", 1)
	for _, tc := range []struct {
		name, text, prefix string
		ok                 bool
	}{
		{"in order", good.String(), "P ", true},
		{"swapped", swapped, "P ", false},
		{"missing", missing, "P ", false},
		{"run together", together, "P ", false},
		{"other prefix", good.String(), "Q ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p := orderProblem(tc.text, tc.prefix); (p == "") != tc.ok {
				t.Errorf("orderProblem = %q, want ok=%v", p, tc.ok)
			}
		})
	}
}

// TestOutputOrderFreshInstances: the interleaving job on instances
// launched for it (--warm 0), orderRounds times.
func TestOutputOrderFreshInstances(t *testing.T) {
	checkOutputOrder(t, orderSetup{name: "daemon-order-fresh", warm: 0})
}

// TestOutputOrderWarmPool: the interleaving job on the warm pool's
// instances (--warm 1), each round on a ready pool instance, orderRounds
// times.
func TestOutputOrderWarmPool(t *testing.T) {
	checkOutputOrder(t, orderSetup{name: "daemon-order-warm", warm: 1})
}

// TestOutputOrderHostLocal: the interleaving job as a host-local job,
// orderRounds times.
func TestOutputOrderHostLocal(t *testing.T) {
	checkOutputOrder(t, orderSetup{name: "daemon-order-host", hostLocal: true})
}

type orderSetup struct {
	name      string
	warm      int
	hostLocal bool
}

// orderHostJobsUser is the host-jobs user of a root daemon: the one
// scripts/hostjobs-up creates, else nobody (this test is about order, not
// about the user).
func orderHostJobsUser() string {
	if _, err := user.Lookup("jerichoci-jobs"); err == nil {
		return "jerichoci-jobs"
	}
	return "nobody"
}

func checkOutputOrder(t *testing.T, s orderSetup) {
	var cl *incus.Client
	if s.hostLocal {
		requireBinaries(t) // no instance: incusd is not needed
	} else {
		cl = require(t)
	}
	url := startNATS(t)
	port := itest.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	target, job := "order", "job"
	var cat string
	args := []string{"--http-listen", strings.TrimPrefix(base, "http://")}
	if s.hostLocal {
		target, job = "order-host", "order-host"
		cat = hostJobsCatalog(t, map[string]string{target: orderCommand}, nil)
		args = append(args, "--allow-host-jobs")
		if os.Geteuid() == 0 {
			args = append(args, "--host-jobs-user", orderHostJobsUser())
		}
	} else {
		cat = writeCatalogWith(t, catalogJob{Target: target, Command: orderCommand})
		args = append(args, "--warm", strconv.Itoa(s.warm))
	}
	name := fmt.Sprintf("%s-%d", s.name, os.Getpid())
	d := startDaemon(t, url, name, cat, 1, args...)
	o := newOrchestrator(t, url)
	for round := 1; round <= orderRounds; round++ {
		ok := t.Run(fmt.Sprintf("round-%02d", round), func(t *testing.T) {
			if s.warm > 0 {
				waitPoolReady(t, d, round) // the job takes a ready instance
			}
			r := runOrderJob(t, o, url, cat, target, job, d, base)
			var prefix, enqueuePrefix string
			if !s.hostLocal {
				prefix = "[runner:stdout] "
			}
			enqueuePrefix = "    " + job + " | " + prefix
			if !s.hostLocal {
				// The guest's own log has the command's bytes as written.
				if p := orderProblem(r.guestLog, ""); p != "" {
					t.Errorf("artifacts/guest.log: %s", p)
				}
				switch {
				case s.warm > 0 && (!strings.Contains(r.hostLog, "taken from the warm pool") || strings.Contains(r.hostLog, ") started from ")):
					t.Errorf("the job did not run on a warm pool instance:\n%s", itest.Tail(r.hostLog, 5))
				case s.warm == 0 && !strings.Contains(r.hostLog, ") started from "):
					t.Errorf("the job did not run on an instance launched for it:\n%s", itest.Tail(r.hostLog, 5))
				}
				checkNoInstances(t, cl, r.id)
			}
			for _, v := range []struct{ what, text, prefix string }{
				{"host.log", r.hostLog, prefix},
				{"the NATS log chunks", r.chunks, prefix},
				{"enqueue --wait", r.enqueueOut, enqueuePrefix},
				{"logs --follow", r.followOut, enqueuePrefix},
				{"the page's log stream", r.page, prefix},
			} {
				if p := orderProblem(v.text, v.prefix); p != "" {
					t.Errorf("%s: %s", v.what, p)
				}
			}
			// Nothing the command wrote is told as the runner's stderr:
			// its two streams met in one pipe in the guest.
			if strings.Contains(r.hostLog, "[runner:stderr] out ") || strings.Contains(r.hostLog, "[runner:stderr] err ") {
				t.Errorf("host.log has the command's output as the runner's stderr")
			}
			if r.chunks != r.hostLog {
				t.Errorf("the NATS chunks (%d bytes) are not host.log (%d bytes)", len(r.chunks), len(r.hostLog))
			}
			if r.page != r.hostLog {
				t.Errorf("the page's log stream (%d bytes) is not host.log (%d bytes)", len(r.page), len(r.hostLog))
			}
		})
		if !ok {
			t.Fatalf("round %d of %d failed", round, orderRounds)
		}
	}
}

// orderRun is what one round saw of its job.
type orderRun struct {
	id, runID                string
	hostLog, guestLog        string
	chunks, enqueueOut, page string
	followOut                string // logs --follow
}

// runOrderJob enqueues target with `enqueue --wait`, following its live
// log chunks on NATS, then reads its logs on disk and the page's stream.
func runOrderJob(t *testing.T, o *orchestrator, url, cat, target, job string, d *daemon, base string) orderRun {
	t.Helper()
	r := orderRun{id: uuid.NewString()}
	var mu sync.Mutex
	var chunks []byte
	var seqs []uint64
	sub, err := o.nc.Subscribe(protocol.SubjectLogsPrefix+r.id+".>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		chunks = append(chunks, m.Data...)
		seq, _ := strconv.ParseUint(m.Header.Get(protocol.HeaderLogSeq), 10, 64)
		seqs = append(seqs, seq)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection ends with the test
	if err := o.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(jciBin, "enqueue", target, "--source", o.src, "--catalog", cat, "--wait", "--job-id", r.id, "--timeout", "4m")
	cmd.Env = append(os.Environ(), "JERICHOCI_NATS_URL="+url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	r.enqueueOut = string(out)
	if err != nil {
		t.Fatalf("enqueue --wait: %v\nstdout:\n%s\nstderr:\n%s", err, itest.Tail(r.enqueueOut, 20), stderr.String())
	}
	res := o.result(t, r.id)
	if res == nil || res.Status != model.StatusPassed {
		t.Fatalf("job %s: %+v", r.id, res)
	}
	r.runID = res.RunID
	dir := jobDir(d.stateRoot, r.runID, job)
	r.hostLog = readText(t, filepath.Join(dir, "host.log"))
	if g, err := os.ReadFile(filepath.Join(dir, "artifacts", "guest.log")); err == nil {
		r.guestLog = string(g)
	}
	// The chunks put together are host.log once the last one arrived.
	itest.WaitFor(t, "the last log chunk on NATS", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(chunks) >= len(r.hostLog)
	})
	mu.Lock()
	r.chunks = string(chunks)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Errorf("chunk %d has sequence %d", i+1, s)
			break
		}
	}
	mu.Unlock()
	r.page = readLogStream(t, base+"/runs/"+r.runID+"/jobs/"+job+"/log/stream?offset=0")
	// logs --follow of the finished job replays its chunks from the stream.
	follow := exec.Command(jciBin, "logs", "--follow", r.id)
	follow.Env = cmd.Env
	stderr.Reset()
	follow.Stderr = &stderr
	out, err = follow.Output()
	r.followOut = string(out)
	if err != nil {
		t.Fatalf("logs --follow: %v\nstdout:\n%s\nstderr:\n%s", err, itest.Tail(r.followOut, 20), stderr.String())
	}
	return r
}

// readLogStream reads a job's server-sent log events until the end event
// and returns their text put together.
func readLogStream(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if event == "end" {
				return text.String()
			}
			var ev struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
				t.Fatalf("log stream event %q: %v", line, err)
			}
			text.WriteString(ev.Text)
		case line == "":
			event = ""
		}
	}
	t.Fatalf("log stream %s ended without its end event (%v) after %d bytes", url, sc.Err(), text.Len())
	return ""
}
