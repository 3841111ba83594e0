package main

import (
	"context"
	"time"

	"jerichoci/internal/writers"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

const followUsage = `logs --follow JOB_ID [nats flags]

Follows a daemon job's output as it is written, from the start of what the
logs stream still holds (a job someone else enqueued), until its final
record: the lines of its host.log as "    <job> | <line>", then the result.
Exit status: 0 passed (or skipped), 1 failed, 2 bad usage or NATS errors.`

// followLogs is `logs --follow JOB_ID`.
func (c *cli) followLogs(ctx context.Context, args []string) int {
	fs, ncfg := c.clientFlagSet("logs --follow", followUsage)
	// It only reads: on this host's embedded server, as the reader.
	ncfg.role = protocol.RoleReader
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
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
		return c.fail(exitUsage, "%v", err)
	}
	defer closeConn()
	opCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w, err := client.Watch(opCtx, id)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer w.Stop()
	out := writers.NewLocked(c.stdout)
	lines := &logLines{out: out}
	stop, err := client.FollowLogs(opCtx, id, true, lines.chunk)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	view := jobView{out: out, name: "logs"}
	rec, err := view.await(ctx, w, 0)
	// Chunks sent before the record may still be on their way.
	time.Sleep(300 * time.Millisecond)
	stop()
	lines.flush()
	if err != nil {
		return c.fail(exitUsage, "following job %s: %v", id, err)
	}
	if rec.Status == model.StatusFailed {
		return exitFailed
	}
	return exitOK
}
