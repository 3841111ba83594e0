package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// TestPushLanesNeverQueuedOnThePage: a push whose group names three lanes
// and their job ids, of which only the first was ever published (its
// publisher died), shows the other two as "not queued" on the daemon's
// /api/pushes and push page, asked of the daemon by job id; the push is
// failed, not running for ever.
func TestPushLanesNeverQueuedOnThePage(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "push-a", Command: "echo push-a"})
	port := itest.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	startDaemon(t, url, "daemon-push-"+uuid.NewString()[:8], cat, 1, "--http-listen", fmt.Sprintf("127.0.0.1:%d", port))
	o := newOrchestrator(t, url)

	lanes := []string{"push-a", "push-b", "push-c"}
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	group := "push-never-" + uuid.NewString()[:8]
	spec := specWith(t, ids[0], "push-a", hostPathSource(o.src),
		map[string]any{"group": map[string]any{"id": group, "lanes": lanes, "job_ids": ids}})
	o.publish(t, protocol.JobSubject("push-a"), spec, ids[0])
	res := o.waitResults(t, ids[:1], 3*time.Minute)[ids[0]]
	if res.Status != model.StatusPassed {
		t.Fatalf("push-a: %s %q, want passed", res.Status, model.Value(res.Message))
	}

	var ps struct {
		Status  string `json:"status"`
		Summary string `json:"summary"`
		Counts  struct {
			Passed    int `json:"passed"`
			Queued    int `json:"queued"`
			NotQueued int `json:"not_queued"`
		} `json:"counts"`
		Lanes []struct {
			Lane   string `json:"lane"`
			Status string `json:"status"`
			JobID  string `json:"job_id"`
			Why    *struct {
				Word string `json:"word"`
				Line string `json:"line"`
			} `json:"why"`
		} `json:"lanes"`
	}
	body := mustGet(t, base+"/api/pushes")
	var all struct {
		Pushes []json.RawMessage `json:"pushes"`
	}
	if err := json.Unmarshal([]byte(body), &all); err != nil || len(all.Pushes) != 1 {
		t.Fatalf("/api/pushes: %v\n%s", err, body)
	}
	if err := json.Unmarshal(all.Pushes[0], &ps); err != nil {
		t.Fatal(err)
	}
	t.Logf("/api/pushes: %s", ps.Summary)
	if ps.Status != "failed" || !strings.HasPrefix(ps.Summary, "failed · 1 passed 2 not queued ·") ||
		ps.Counts.Passed != 1 || ps.Counts.NotQueued != 2 || ps.Counts.Queued != 0 {
		t.Errorf("push %s %q %+v; want failed, \"failed · 1 passed 2 not queued · …\"", ps.Status, ps.Summary, ps.Counts)
	}
	want := []string{"passed", "not_queued", "not_queued"}
	if len(ps.Lanes) != len(lanes) {
		t.Fatalf("lanes %+v, want %v", ps.Lanes, lanes)
	}
	for i, l := range ps.Lanes {
		if l.Lane != lanes[i] || l.Status != want[i] || l.JobID != ids[i] {
			t.Errorf("lane %d: %s %s job %s; want %s %s job %s", i, l.Lane, l.Status, l.JobID, lanes[i], want[i], ids[i])
		}
		if want[i] == "not_queued" && (l.Why == nil || l.Why.Word != "not queued" ||
			!strings.HasPrefix(l.Why.Line, "never queued: the push stopped before this lane")) {
			t.Errorf("lane %s: why %+v, want \"not queued\", \"never queued: the push stopped before this lane …\"", l.Lane, l.Why)
		}
	}
	page := mustGet(t, base+"/pushes/"+group)
	if n := strings.Count(page, `<span class="badge st-not_queued">not queued</span>`); n != 2 {
		t.Errorf("the push page shows %d lanes not queued, want 2", n)
	}
	checkNoInstances(t, cl, ids[0])
}

// mustGet is the body of url, which must answer 200.
func mustGet(t *testing.T, url string) string {
	t.Helper()
	code, body := httpGet(url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, code, body)
	}
	return body
}
