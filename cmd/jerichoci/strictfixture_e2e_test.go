package main

import (
	"strings"
	"testing"

	"jerichoci/model"
)

// strictWrapperLines are what every wrapper of the strict staged fixture
// prints when the guest is what pika's wrappers need: the system profile's
// bash, python3 and node (/run/current-system/sw/bin), SSL_CERT_FILE, an
// existing XDG_CACHE_HOME and the users group (the wrapper exits non-zero
// otherwise). testdata/fixtures/staged-repo/flake.nix writes them.
var strictWrapperLines = []string{
	"python3 /run/current-system/sw/bin/python3",
	"node /run/current-system/sw/bin/node",
	"cert /etc/ssl/certs/ca-bundle.crt",
	"cache /cargo-home/xdg-cache",
	"staged wrapper passed",
}

// The whole check-pika-followup lane (six staged jobs on pika's two
// follow-up outputs) runs on the strict fixture in containers through
// `jerichoci run`, each wrapper's python3 and node from the system profile.
func TestE2EPikaFollowupLaneOnTheStrictFixture(t *testing.T) {
	cl := requireIncus(t)
	requireNix(t)
	src, state := stagedSource(t), t.TempDir()
	r := runIn(t, cl, src, state, nil, "check-pika-followup")
	if r.code != exitOK || r.rec.Status != model.StatusPassed {
		t.Fatalf("exit %d, run %s %q\nstdout:\n%s\nstderr:\n%s", r.code, r.rec.Status, model.Value(r.rec.Message), r.stdout, r.stderr)
	}
	if len(r.rec.Jobs) != 6 {
		t.Errorf("the lane ran %d jobs, want pika's 6", len(r.rec.Jobs))
	}
	for _, j := range r.rec.Jobs {
		if j.Status != model.StatusPassed {
			t.Errorf("job %s: %s %q", j.ID, j.Status, model.Value(j.Message))
		}
		guest := readFile(t, j.GuestLogPath)
		for _, want := range strictWrapperLines {
			if !strings.Contains(guest, want) {
				t.Errorf("job %s: guest.log lacks %q:\n%s", j.ID, want, guest)
			}
		}
	}
}
