package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

func init() {
	register("cancel", command{summary: "cancel a queued or running daemon job", run: runCancel})
}

const cancelUsage = `cancel JOB_ID [--wait] [--timeout D] [nats flags]

Asks the daemons to cancel the job (a request on jerichoci.cancel.JOB_ID): a
running job is stopped and its instance deleted; a queued one never starts.
Either way its final record is failed with the message "cancelled". With
--wait it waits for that record. Exit status: 0 when the cancel was accepted
(with --wait: the job ended cancelled), 1 when the job had already finished
otherwise, 2 on bad usage, when no daemon answers or on --timeout.`

func runCancel(ctx context.Context, c *cli, args []string) int {
	ncfg := defaultNATSConfig()
	ncfg.fromEnv(c.env)
	fs := c.flagSet("cancel", cancelUsage)
	ncfg.flags(fs, false)
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
	if err := ncfg.Validate(false); err != nil {
		return c.fail(exitUsage, "invalid configuration:\n%v", err)
	}
	if err := ncfg.useStateCredentials(); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if *timeout <= 0 {
		return c.usageErr(fs, "--timeout %s: must be positive", *timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, _, err := ncfg.connect(ncfg.clientURL(), "jerichoci cancel", zap.NewNop())
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer nc.Close()
	var w *runWatch
	if *wait {
		js, err := jetstream.New(nc)
		if err != nil {
			return c.fail(exitUsage, "jetstream: %v", err)
		}
		if w, err = watchRun(ctx, nc, js, jobID, c.stdout, false); err != nil {
			return c.fail(exitUsage, "%v", err)
		}
		defer w.stop()
	}
	m, err := nc.RequestWithContext(ctx, protocol.SubjectCancelPrefix+jobID, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return c.fail(exitUsage, "no daemon answers on %s%s: is jerichoci serve running?", protocol.SubjectCancelPrefix, jobID)
	}
	if err != nil {
		return c.fail(exitUsage, "cancel %s: %v", jobID, err)
	}
	var rep protocol.CancelReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return c.fail(exitUsage, "cancel %s: unreadable reply %q", jobID, m.Data)
	}
	if rep.Error != "" {
		return c.fail(exitUsage, "cancel %s: %s", jobID, rep.Error)
	}
	line := fmt.Sprintf("job %s: %s\n", jobID, rep.Message)
	if w != nil {
		w.printf("%s", line)
	} else {
		fmt.Fprint(c.stdout, line)
	}
	if rep.State == protocol.ClaimFinished {
		return exitFailed
	}
	if !*wait {
		return exitOK
	}
	rec, err := w.result(ctx)
	if err != nil {
		return c.fail(exitUsage, "waiting for job %s: %v", jobID, err)
	}
	w.final(rec)
	if rec.Status == model.StatusFailed && rec.Message != nil && *rec.Message == run.MsgCancelled {
		return exitOK
	}
	return exitFailed
}
