package main

import (
	"context"
	"flag"
	"time"

	"jerichoci/internal/backoff"
	"jerichoci/internal/writers"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// followLogs is `logs --follow JOB_ID`, its flags parsed into fs and
// ncfg by runLogs.
func (c *cli) followLogs(ctx context.Context, fs *flag.FlagSet, ncfg *natsConfig, pos []string) int {
	// It only reads: on this host's embedded server, as the reader.
	ncfg.role = protocol.RoleReader
	if len(pos) != 1 {
		return c.usageErr(fs, "expected one JOB_ID, got %d arguments", len(pos))
	}
	id := pos[0]
	if _, err := model.ParseJobID(id); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	if err := ncfg.clientReady(); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	client, closeConn, err := ncfg.dialClient("jerichoci logs --follow")
	if err != nil {
		return c.clientFail(ctx, "", "%v", err)
	}
	defer closeConn()
	opCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if code, done := c.checkFollowable(ctx, opCtx, client, ncfg.clientURL(), id); done {
		return code
	}
	w, err := client.Watch(opCtx, id)
	if err != nil {
		return c.clientFail(ctx, "", "%v", err)
	}
	defer w.Stop()
	out := writers.NewLocked(c.stdout)
	lines := &logLines{out: out}
	stop, err := client.FollowLogs(opCtx, id, true, lines.chunk)
	if err != nil {
		return c.clientFail(ctx, "", "%v", err)
	}
	view := jobView{out: out, name: "logs"}
	rec, err := view.await(ctx, w, 0)
	// Chunks sent before the record may still be on their way.
	_ = backoff.Sleep(ctx, 300*time.Millisecond)
	stop()
	lines.flush()
	if err != nil {
		return c.clientFail(ctx, "the job goes on", "following job %s: %v", id, err)
	}
	if rec.Status == model.StatusFailed {
		return exitFailed
	}
	return exitOK
}
