package metrics

import (
	"testing"
	"time"

	"jerichoci/model"
	"jerichoci/run/daemon"
)

// A warm job's phases take milliseconds: /metrics tells them apart.
func TestPhaseHistogramResolvesMilliseconds(t *testing.T) {
	m := New(Gauges{})
	now := time.Now()
	rec := record(model.StatusPassed, now, time.Second)
	rec.Jobs[0].RemoteLinuxVMExecution.Phases = []model.PhaseRecord{
		{Phase: model.PhaseCollectArtifacts, StartedAt: model.At(now), FinishedAt: model.At(now.Add(3 * time.Millisecond))},
		{Phase: model.PhaseLaunchGuest, StartedAt: model.At(now), FinishedAt: model.At(now.Add(20 * time.Millisecond))},
	}
	m.Settled(daemon.Settlement{Target: "demo-pass", Action: "ack", Final: true, Record: rec})
	got := scrape(t, m.Handler())
	for k, want := range map[string]string{
		`jerichoci_phase_duration_seconds_bucket{phase="collect_artifacts",le="0.0025"}`: "0",
		`jerichoci_phase_duration_seconds_bucket{phase="collect_artifacts",le="0.005"}`:  "1",
		`jerichoci_phase_duration_seconds_bucket{phase="launch_guest",le="0.01"}`:        "0",
		`jerichoci_phase_duration_seconds_bucket{phase="launch_guest",le="0.025"}`:       "1",
	} {
		if got[k] != want {
			t.Errorf("%s = %q; want %q", k, got[k], want)
		}
	}
}
