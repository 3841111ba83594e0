package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"jerichoci/internal/treecopy"
)

// TestHostsStagedFixtureLaneOverHTTPSOnly: pika's check-pika-followup lane
// on the strict staged fixture, enqueued with --wait from the client
// namespace, runs on a daemon in a host namespace whose incusd is
// reachable only over HTTPS (INCUS_SOCKET points nowhere). The staged
// outputs are built by the worker's Nix and reach each guest through the
// Incus API (--incus-transfer auto picks it for a remote incusd;
// docs/INCUS.md), as no filesystem is shared with incusd.
func TestHostsStagedFixtureLaneOverHTTPSOnly(t *testing.T) {
	requireNix(t)
	b := startTestBed(t, 1, "--allow-staged-builds")
	src := filepath.Join(t.TempDir(), "repo")
	if err := treecopy.Copy(t.Context(), stagedFixtureDir(), src, treecopy.Options{}); err != nil {
		t.Fatal(err)
	}
	// New derivations, so the lane builds its outputs here and now.
	if err := os.WriteFile(filepath.Join(src, "src", "hello.txt"), []byte(uniqueHello(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := b.clientCmd("enqueue", "check-pika-followup", "--source", src, "--wait", "--timeout", "20m")
	out, err := cmd.CombinedOutput()
	code := exitOf(t, err)
	id := enqueuedID(t, string(out))
	res := b.o.waitResults(t, []string{id}, time.Minute)[id]
	if code != 0 || !strings.Contains(string(out), "PASSED 6 passed") {
		t.Fatalf("enqueue check-pika-followup --wait from %s: exit %d\n%s", b.client.NS, code, out)
	}
	checkOneFinal(t, id, res, diskRuns(t, b.daemons()...)[id])
	seen := 0
	for _, d := range b.daemons() {
		for _, j := range res.Jobs {
			host := filepath.Join(jobDir(d.stateRoot, res.RunID, j.ID), "host.log")
			if _, err := os.Stat(host); err != nil {
				continue // another host ran the lane
			}
			seen++
			if log := readText(t, host); !strings.Contains(log, "through the Incus API (one archive)") {
				t.Errorf("%s: %s's files did not go through the Incus API:\n%s", d.name, j.ID, log)
			}
			guest := readText(t, filepath.Join(jobDir(d.stateRoot, res.RunID, j.ID), "artifacts", "guest.log"))
			checkContains(t, j.ID+" guest.log", guest, "staged wrapper passed")
		}
	}
	if seen != len(res.Jobs) || seen != 6 {
		t.Errorf("found the host.log of %d jobs on the hosts, want the lane's 6 (%d in its record)", seen, len(res.Jobs))
	}
	checkNoInstances(t, b.cl, id)
}
