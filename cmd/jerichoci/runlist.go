package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"jerichoci/model"
	"jerichoci/run"
)

// list and runs list: the runs of a state root, newest first. Both are one
// read (listRuns); list prints pikaci's lines, runs list a table, and
// --json the records.

const listUsage = `list [--json] [--state-root DIR]

Lists runs as pikaci list does, newest first by created_at, one per line:
"<run_id>\t<status>\t<target_id, else the first job's id, else ->\t<created_at>".
Run directories without run.json are left out; a run.json that cannot be
read is an error, and nothing is printed. --json prints the run records.
'jerichoci runs list' prints a table instead.

` + stateRootNote

// listFormat is how listRuns prints the runs.
type listFormat int

const (
	// listPikaci is pikaci's list: tab-separated lines; a record that
	// cannot be read is an error and nothing is printed, as with the
	// original.
	listPikaci listFormat = iota
	// listTable is runs list: a table of the records that could be read,
	// then the error about the others.
	listTable
)

func runList(_ context.Context, c *cli, args []string) int {
	return c.listRuns("list", listUsage, listPikaci, args)
}

func runRunsList(c *cli, args []string) int {
	return c.listRuns("runs list", "runs list [--state-root DIR] [--json]", listTable, args)
}

// listRuns is the one read behind list and runs list.
func (c *cli) listRuns(name, usage string, format listFormat, args []string) int {
	fs, root := c.stateRootFlag(name, usage)
	asJSON := fs.Bool("json", false, "print the run records as a JSON array")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "unexpected argument %q", pos[0])
	}
	runs, err := run.ListRuns(*root)
	if err != nil && format == listPikaci {
		return c.fail(exitUsage, "some run records could not be read:\n%v", err)
	}
	switch {
	case *asJSON:
		if runs == nil {
			runs = []model.RunRecord{}
		}
		if code := c.writeJSON(runs); code != exitOK {
			return code
		}
	case format == listPikaci:
		var b strings.Builder
		for _, r := range runs {
			target := "-"
			switch {
			case r.TargetID != nil:
				target = *r.TargetID
			case len(r.Jobs) > 0:
				target = r.Jobs[0].ID
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", r.RunID, r.Status, target, r.CreatedAt)
		}
		fmt.Fprint(c.stdout, b.String())
	default:
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN ID\tSTATUS\tTARGET\tJOBS\tCREATED\tDURATION")
		for _, r := range runs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.RunID, r.Status, model.Value(r.TargetID), len(r.Jobs), r.CreatedAt, runDuration(r))
		}
		tw.Flush()
	}
	if err != nil {
		return c.fail(exitUsage, "some run records could not be read:\n%v", err)
	}
	return exitOK
}
