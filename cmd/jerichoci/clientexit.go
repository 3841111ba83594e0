package main

import (
	"context"
	"fmt"
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
