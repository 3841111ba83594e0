package main

import (
	"fmt"

	"jerichoci/model"
)

// statusReasons says on stderr why a failed run failed: each failed job's
// message, "<job>: <message>", as the original's human summary prints job
// messages on stderr. Standard output keeps pikaci status's lines
// unchanged; a run message is already among them.
func (c *cli) statusReasons(r model.RunRecord) {
	if r.Status != model.StatusFailed {
		return
	}
	for _, j := range r.Jobs {
		if j.Status == model.StatusFailed && j.Message != nil && *j.Message != "" {
			fmt.Fprintf(c.stderr, "%s: %s\n", j.ID, *j.Message)
		}
	}
}
