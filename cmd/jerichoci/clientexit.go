package main

import (
	"context"
	"errors"
	"fmt"

	"jerichoci/run/protocol"
)

// clientFail ends a client command (enqueue, cancel, logs --follow) on
// err: with 130 when a signal ended ctx (README's exit codes: Ctrl-C is
// 130, whatever error the interruption surfaced as), else with 2. what
// names the job's fate for the interrupted case ("" says nothing).
func (c *cli) clientFail(ctx context.Context, what string, format string, a ...any) int {
	if ctx.Err() != nil {
		msg := "interrupted"
		if what != "" {
			msg += "; " + what
		}
		fmt.Fprintf(c.stderr, "jerichoci: %s\n", msg)
		return exitInterrupted
	}
	return c.fail(exitUsage, format, a...)
}

// checkFollowable makes sure `logs --follow` has something to wait for: a
// job the daemon knows (queued, running or finished). An unknown id is
// bad input (exit 2), and so is no daemon at all unless the job's record
// is there to print: nothing would ever come.
func (c *cli) checkFollowable(sig, ctx context.Context, client *protocol.Client, url, id string) (code int, done bool) {
	rep, err := client.Lookup(ctx, id)
	switch {
	case errors.Is(err, protocol.ErrNoDaemon):
		// No daemon (or one older than lookups): a finished job's
		// record can still be printed.
		if rec, rerr := client.Result(ctx, id); rerr == nil && rec != nil {
			return 0, false
		}
		return c.clientFail(sig, "", "job %s: %s", id, noDaemonHint(url)), true
	case err != nil:
		return c.clientFail(sig, "", "%v", err), true
	case rep.State == protocol.ClaimUnknown:
		return c.fail(exitUsage, "job %s is unknown: no job with this id is queued, running or finished (a mistyped id? 'jerichoci runs list' and the status page list the jobs)", id), true
	}
	return 0, false
}
