package daemon

import (
	"fmt"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// closeStaleRuns closes the runs that an earlier process of this daemon
// left `running` in the state root (it was killed): each becomes failed,
// naming the attempt that took the job over when there is one, so no
// run.json says running forever. It runs once at start, before any worker.
func (d *Daemon) closeStaleRuns() {
	store := d.Runner.Store()
	runs, err := store.ListRuns()
	if err != nil {
		d.logger().Warn("read old runs", zap.Error(err))
	}
	for _, rec := range runs {
		if rec.Status != model.StatusRunning || d.runsLocally(rec.RunID) {
			continue
		}
		var jf protocol.JobFile
		if err := store.ReadRunFile(rec.RunID, protocol.JobFileName, &jf); err != nil {
			continue // not a daemon run (or not one of ours)
		}
		msg := "interrupted: the daemon running this attempt stopped before it ended; this run is not the job's result"
		octx, cancel := d.opCtx()
		cur, err := getClaim(octx, d.Jobs, jf.JobID)
		cancel()
		switch {
		case err != nil:
			d.logger().Warn("close an old run: read its claim", zap.String("run_id", rec.RunID), zap.Error(err))
		case cur != nil && cur.RunID != rec.RunID:
			msg = fmt.Sprintf("superseded: the daemon running this attempt stopped; run %s on %s took the job over (%s); this run is not the job's result",
				cur.RunID, cur.Worker, cur.State)
		}
		markFailed(&rec, msg, d.now())
		if err := store.WriteRun(rec); err != nil {
			d.logger().Warn("close an old run", zap.String("run_id", rec.RunID), zap.Error(err))
			continue
		}
		d.logger().Info("closed a run left running by an earlier process", zap.String("run_id", rec.RunID),
			zap.String("job_id", jf.JobID), zap.String("message", msg))
	}
}
