package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// TestBurstsLeaveNoOperationWaitAtItsLimit runs bursts as a user meets
// them (a fresh daemon with its default 2 workers and warm pool, one job,
// then four at once; docs/INCUS.md, "The traps it handles") and counts, not
// times: no wait on an Incus operation may reach its long-poll limit with
// the operation still running (jerichoci_incus_operation_wait_limit_total),
// which is how incusd's 30 s stalls showed. The stall needs an unlucky
// interleaving, so this test alone catches it only sometimes; the
// mechanism has its own deterministic test in executor/incus
// (TestNoSilentConnectionStallsIncusd), and scripts/stall-check runs 1,000
// jobs.
func TestBurstsLeaveNoOperationWaitAtItsLimit(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "burst", Command: "echo burst"})
	const bursts, parallel = 3, 4
	for b := 1; b <= bursts; b++ {
		base := fmt.Sprintf("http://127.0.0.1:%d", itest.FreePort(t))
		name := fmt.Sprintf("daemon-burst-%d", b)
		d := startDaemon(t, url, name, cat, 2, "--warm", "-1", "--http-listen", strings.TrimPrefix(base, "http://"))
		o := newOrchestrator(t, url)
		run := func(n int) {
			ids := make([]string, n)
			for i := range ids {
				ids[i] = uuid.NewString()
				o.publish(t, protocol.JobSubject("burst"), o.spec(ids[i], "burst"), ids[i])
			}
			for id, res := range o.waitResults(t, ids, 5*time.Minute) {
				if res.Status != model.StatusPassed {
					t.Errorf("burst %d: job %s %s %q", b, id, res.Status, model.Value(res.Message))
				}
				checkNoInstances(t, cl, id)
			}
		}
		run(1)
		run(parallel)
		m := scrapeMetrics(t, base)
		hits, ok := m["jerichoci_incus_operation_wait_limit_total"]
		if !ok {
			t.Fatalf("burst %d: /metrics has no jerichoci_incus_operation_wait_limit_total", b)
		}
		if hits != 0 {
			t.Errorf("burst %d: %v waits on an Incus operation reached their long-poll limit (a stall):\n%s", b, hits,
				itest.Tail(d.log.String(), 40))
		}
		// The next burst meets a fresh daemon, as in the field.
		stopDaemon(t, d)
	}
}
