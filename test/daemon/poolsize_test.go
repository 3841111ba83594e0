package daemon_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// TestWarmPoolGrowsForABurst: a daemon with --warm-min 1 --warm-max 4
// keeps one instance ready; a burst of 6 jobs at once, more than its 2
// workers take, makes the pool grow past its floor (instances carrying
// the pool's owner key, idle or being made), never past its ceiling, and
// every job passes (docs/INCUS.md, "The warm pool's size").
func TestWarmPoolGrowsForABurst(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	name := fmt.Sprintf("daemon-poolsize-%d", os.Getpid())
	d := startDaemon(t, url, name, writeCatalog(t), 2, "--warm", "1", "--warm-min", "1", "--warm-max", "4", "--warm-parallel", "2")
	waitPoolReady(t, d, 1)

	// Watch the pool's instances while the burst runs.
	var (
		mu   sync.Mutex
		most int
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			n := len(poolInstances(t, cl, name))
			mu.Lock()
			most = max(most, n)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	o := newOrchestrator(t, url)
	var ids []string
	for range 6 {
		id := uuid.NewString()
		ids = append(ids, id)
		o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
	}
	results := o.waitResults(t, ids, 5*time.Minute)
	close(stop)
	<-watched
	for _, id := range ids {
		if res := results[id]; res.Status != model.StatusPassed {
			t.Errorf("job %s: %s %q", id, res.Status, model.Value(res.Message))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most < 2 || most > 4 {
		t.Errorf("the pool held at most %d instances during the burst; want it grown past --warm-min 1, within --warm-max 4", most)
	}
	t.Logf("the pool held at most %d instances during the burst", most)
	stopDaemon(t, d)
	if left := poolInstances(t, cl, name); len(left) > 0 {
		t.Errorf("pool instances left after serve stopped: %s", left[0].Name)
	}
}
