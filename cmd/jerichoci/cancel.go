package main

import (
	"context"
	"time"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

const cancelUsage = `cancel JOB_ID [--wait] [--timeout D] [nats flags]

Asks the daemons to cancel the job (a request on jerichoci.cancel.JOB_ID): a
running job is stopped and its instance deleted; a queued one never starts.
Either way its final record is failed with the message "cancelled". With
--wait it waits for that record. Exit status: 0 when the cancel was accepted
(with --wait: the job ended cancelled), 1 when the job had already finished
otherwise, 2 on bad usage, for a job id no daemon knows (not queued,
running or finished), when no daemon answers or on --timeout, 130 on Ctrl-C.`

func runCancel(ctx context.Context, c *cli, args []string) int {
	fs, ncfg := c.clientFlagSet("cancel", cancelUsage)
	wait := fs.Bool("wait", false, "wait for the job's final record")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after `D`")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "expected exactly one JOB_ID, got %d arguments", len(pos))
	}
	jobID := pos[0]
	if _, err := model.ParseJobID(jobID); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	if err := ncfg.clientReady(); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if *timeout <= 0 {
		return c.usageErr(fs, "--timeout %s: must be positive", *timeout)
	}
	sig := ctx // ended by a signal only: exit 130 (clientFail)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client, closeConn, err := ncfg.dialClient("jerichoci cancel")
	if err != nil {
		return c.clientFail(sig, "", "%v", err)
	}
	defer closeConn()
	var w *protocol.Watch
	if *wait {
		// Follow before asking, so the final record is not missed.
		if w, err = client.Watch(ctx, jobID); err != nil {
			return c.clientFail(sig, "", "%v", err)
		}
		defer w.Stop()
	}
	rep, err := client.Cancel(ctx, jobID)
	if err != nil {
		return c.clientFail(sig, "the cancel may or may not have been delivered", "%v", err)
	}
	view := jobView{out: c.stdout}
	view.note("job %s: %s\n", jobID, rep.Message)
	if rep.State == protocol.ClaimUnknown {
		return exitUsage
	}
	if rep.State == protocol.ClaimFinished {
		return exitFailed
	}
	if !*wait {
		return exitOK
	}
	rec, err := view.await(ctx, w, 0)
	if err != nil {
		return c.clientFail(sig, "the cancel was requested", "waiting for job %s: %v", jobID, err)
	}
	if rec.Status == model.StatusFailed && rec.Message != nil && *rec.Message == run.MsgCancelled {
		return exitOK
	}
	return exitFailed
}
