package daemon_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// The whole check-pika-followup lane on the strict staged fixture through
// the daemon: six staged jobs, each wrapper starting with the guest's
// /run/current-system/sw/bin/bash and running python3 and node from there,
// with SSL_CERT_FILE, XDG_CACHE_HOME and gid 100 (the wrapper fails
// otherwise; testdata/fixtures/staged-repo/flake.nix). It runs with the
// staged outputs mounted from the worker's store and again with them
// copied in through the Incus API (--incus-transfer, docs/INCUS.md), the
// same source (built once): the two run records are the same, volatile
// values masked.
func TestPikaFollowupLaneOnTheStrictFixture(t *testing.T) {
	cl := require(t)
	requireNix(t)
	tarball := stagedFixtureTarball(t, uniqueHello(t))
	records := map[string]string{}
	for _, mode := range []string{"mounts", "api"} {
		url := startNATS(t)
		d := startDaemon(t, url, "daemon-strict-"+mode, stagedFixtureCatalog(), 1, "--allow-staged-builds", "--incus-transfer", mode)
		o := newOrchestrator(t, url)
		src := o.uploadSource(t, tarball)
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
			t.Fatalf("%s: lane %s (job %s): run %s %q; jobs %s", mode, lane, id, res.Status, model.Value(res.Message), jsonString(res.Jobs))
		}
		if len(res.Jobs) != 6 {
			t.Errorf("%s: the lane ran %d jobs, want pika's 6", mode, len(res.Jobs))
		}
		for _, j := range res.Jobs {
			guest := readText(t, filepath.Join(jobDir(d.stateRoot, res.RunID, j.ID), "artifacts", "guest.log"))
			checkContains(t, mode+" "+j.ID+" guest.log", guest,
				"python3 /run/current-system/sw/bin/python3", "node /run/current-system/sw/bin/node",
				"cert /etc/ssl/certs/ca-bundle.crt", "cache /cargo-home/xdg-cache", "staged wrapper passed")
			host := readText(t, filepath.Join(jobDir(d.stateRoot, res.RunID, j.ID), "host.log"))
			if api := strings.Contains(host, "through the Incus API (one archive)"); api != (mode == "api") {
				t.Errorf("%s: %s host.log says the files went through the API: %v", mode, j.ID, api)
			}
		}
		records[mode] = maskedRunRecord(t, d, res.RunID)
		checkNoInstances(t, cl, id)
		stopDaemon(t, d)
	}
	if records["mounts"] != records["api"] {
		t.Errorf("run records differ (-mounts +api):\n%s", cmp.Diff(records["mounts"], records["api"]))
	}
}
