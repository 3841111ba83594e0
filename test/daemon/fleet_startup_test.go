package daemon_test

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// fleetStartRounds is how many times TestFleetStartsWithItsCluster starts
// a fresh cluster and its fleet together: 2 in make check (a round takes
// half a minute), 10 for docs/RELIABILITY.md's ten in a row.
var fleetStartRounds = flag.Int("fleet-start-rounds", 2, "rounds of TestFleetStartsWithItsCluster")

// fleetStartCatalog: a job that keeps its worker busy a few seconds, so
// that three queued at once go one to each daemon of concurrency 1.
const fleetStartCatalog = `{"schema_version": 1, "targets": [
 {"id": "demo-busy", "description": "keeps a worker busy", "jobs": [{"id": "busy", "description": "sleep", "timeout_secs": 120,
   "command": {"kind": "shell", "command": "echo start; sleep 4; echo done"},
   "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}
]}`

// TestFleetStartsWithItsCluster: three nats-servers and three daemons
// (--replicas 3) started at one moment, as hosts that boot together; every
// daemon waits for the cluster instead of exiting, says so on /readyz
// meanwhile, then becomes ready and runs a job. Round after round, each
// with a fresh cluster.
func TestFleetStartsWithItsCluster(t *testing.T) {
	if *fleetStartRounds < 1 {
		t.Fatalf("-fleet-start-rounds %d: expected at least 1", *fleetStartRounds)
	}
	require(t)
	cat := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(cat, []byte(fleetStartCatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= *fleetStartRounds; round++ {
		if !t.Run(fmt.Sprintf("round-%d", round), func(t *testing.T) { fleetStartRound(t, cat, round) }) {
			t.Fatalf("round %d of %d failed", round, *fleetStartRounds)
		}
	}
}

func fleetStartRound(t *testing.T, cat string, round int) {
	c := launchNATSCluster(t, 3)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("NATS cluster logs:\n%s", c.logs())
		}
	})
	var ds []*daemon
	var pages []string
	for i := range 3 {
		page := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
		pages = append(pages, "http://"+page)
		ds = append(ds, launchDaemon(t, c.urls(), fmt.Sprintf("fleet-start-%d-r%d-d%d", os.Getpid(), round, i+1), cat, 1,
			"--replicas", "3", "--http-listen", page, "--nats-wait", "15m"))
	}
	// Generous: on a loaded host of 2 cores a fresh cluster has taken 4½
	// minutes to place the fleet's streams. No bound on speed is asserted.
	start := time.Now()
	var slowest time.Duration
	for _, d := range ds {
		itest.WaitServing(t, d.name, d.cmd, d.log, d.done, 12*time.Minute)
		slowest = time.Since(start)
	}
	waited, resent := 0, 0
	for i, d := range ds {
		log := d.log.String()
		if strings.Contains(log, "NATS not ready yet; waiting") {
			waited++
		}
		resent += strings.Count(log, "sending it again")
		itest.WaitFor(t, d.name+" ready on "+pages[i]+"/readyz", time.Minute, func() bool {
			code, _ := httpGet(pages[i] + "/readyz")
			return code == http.StatusOK
		})
	}
	itest.Report(t, "round %d: all 3 daemons serving %s after start; %d of them retried the set-up, %d set-up requests sent again",
		round, slowest.Round(100*time.Millisecond), waited, resent)

	o := newOrchestrator(t, c.urls())
	var ids []string
	for range 3 {
		id := uuid.NewString()
		ids = append(ids, id)
		o.publish(t, protocol.JobSubject("demo-busy"), o.spec(id, "demo-busy"), id)
	}
	res := o.waitResults(t, ids, 5*time.Minute)
	ran := map[string]int{}
	for _, id := range ids {
		if res[id].Status != model.StatusPassed {
			t.Fatalf("job %s: %s %q", id, res[id].Status, model.Value(res[id].Message))
		}
		for _, d := range ds {
			if _, err := os.Stat(jobDir(d.stateRoot, res[id].RunID, "busy")); err == nil {
				ran[d.name]++
			}
		}
	}
	for _, d := range ds {
		if ran[d.name] == 0 {
			t.Errorf("daemon %s ran none of the 3 jobs (ran: %v)", d.name, ran)
		}
	}
	for _, d := range ds {
		stopDaemon(t, d)
	}
}

// httpGet returns the status and body of GET url (0 when it fails).
func httpGet(url string) (int, string) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
