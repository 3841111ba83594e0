package daemon_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// The whole check-pika-followup lane on the strict staged fixture through
// the daemon: six staged jobs, each wrapper starting with the guest's
// /run/current-system/sw/bin/bash and running python3 and node from there,
// with SSL_CERT_FILE, XDG_CACHE_HOME and gid 100 (the wrapper fails
// otherwise; testdata/fixtures/staged-repo/flake.nix).
func TestPikaFollowupLaneOnTheStrictFixture(t *testing.T) {
	cl := require(t)
	requireNix(t)
	url := startNATS(t)
	d := startDaemon(t, url, "daemon-strict", stagedFixtureCatalog(), 1, "--allow-staged-builds")
	o := newOrchestrator(t, url)
	src := o.uploadSource(t, stagedFixtureTarball(t, uniqueHello(t)))
	const lane = "check-pika-followup"
	id := uuid.NewString()
	spec, err := json.Marshal(map[string]any{"schema_version": 1, "job_id": id, "lane": lane, "source": src})
	if err != nil {
		t.Fatal(err)
	}
	o.publish(t, protocol.JobSubject(lane), spec, id)
	res := o.waitResults(t, []string{id}, 20*time.Minute)[id]
	runs := diskRuns(t, d)[id]
	checkOneDelivery(t, id, runs)
	checkOneFinal(t, id, res, runs)
	if res.Status != model.StatusPassed {
		t.Fatalf("lane %s (job %s): run %s %q; jobs %s", lane, id, res.Status, model.Value(res.Message), jsonString(res.Jobs))
	}
	if len(res.Jobs) != 6 {
		t.Errorf("the lane ran %d jobs, want pika's 6", len(res.Jobs))
	}
	for _, j := range res.Jobs {
		guest := readText(t, filepath.Join(jobDir(d.stateRoot, res.RunID, j.ID), "artifacts", "guest.log"))
		checkContains(t, j.ID+" guest.log", guest,
			"python3 /run/current-system/sw/bin/python3", "node /run/current-system/sw/bin/node",
			"cert /etc/ssl/certs/ca-bundle.crt", "cache /cargo-home/xdg-cache", "staged wrapper passed")
	}
	checkNoInstances(t, cl, id)
}
