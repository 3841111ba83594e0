package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// transferVolatile are the run record's values that differ run to run.
var transferVolatile = regexp.MustCompile(`"([a-z_]*_at|[a-z_]*duration_ms|[a-z_]*run_id|fingerprint|job_id|source_root)": *("[^"]*"|[0-9]+)`)

// maskedRunRecord reads a run's run.json with the volatile values (times,
// durations, ids, fingerprints, the state root) masked.
func maskedRunRecord(t *testing.T, d *daemon, runID string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.stateRoot, "runs", runID, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), runID, "RUN")
	s = strings.ReplaceAll(s, d.stateRoot, "STATE")
	return transferVolatile.ReplaceAllString(s, `"$1": "*"`)
}

// TestTransferAPIRecordMatchesMounts runs demo-pass through a daemon with
// a warm pool whose files go through the Incus API and through one whose
// files are host-path disks, and compares the two run records, volatile
// values masked: byte for byte the same.
func TestTransferAPIRecordMatchesMounts(t *testing.T) {
	cl := require(t)
	records := map[string]string{}
	for _, mode := range []string{"mounts", "api"} {
		url := startNATS(t)
		name := fmt.Sprintf("daemon-transfer-%s-%d", mode, os.Getpid())
		d := startDaemon(t, url, name, writeCatalog(t), 1, "--warm", "1", "--incus-transfer", mode)
		waitPoolReady(t, d, 1)
		o := newOrchestrator(t, url)
		id := uuid.NewString()
		o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
		res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
		if res.Status != model.StatusPassed {
			t.Fatalf("%s: %s %q", mode, res.Status, model.Value(res.Message))
		}
		host := readText(t, filepath.Join(jobDir(d.stateRoot, res.RunID, "hello"), "host.log"))
		if !strings.Contains(host, "taken from the warm pool") {
			t.Errorf("%s: the job did not take a pool instance:\n%s", mode, host)
		}
		if api := strings.Contains(host, "through the Incus API (one archive)"); api != (mode == "api") {
			t.Errorf("%s: host.log says the files went through the API: %v\n%s", mode, api, host)
		}
		records[mode] = maskedRunRecord(t, d, res.RunID)
		checkNoInstances(t, cl, id)
		stopDaemon(t, d)
	}
	if records["mounts"] != records["api"] {
		t.Errorf("run records differ (-mounts +api):\n%s", cmp.Diff(records["mounts"], records["api"]))
	}
}
