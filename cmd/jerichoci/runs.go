package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"

	"jerichoci/model"
	"jerichoci/run"
)

// The runs group reads the state root's run records. Its list, show, logs
// and gc are the same reads as pikaci's list, status, logs and gc, printed
// as tables and plain logs instead of the original's lines (runlist.go,
// runshow.go, runlogs.go and gc below).

func runRuns(_ context.Context, c *cli, args []string) int {
	return c.runGroup("runs", runsHelp, args, []subcommand{
		{"list", "list runs, newest first", runRunsList},
		{"show", "show one run and its jobs", runRunsShow},
		{"logs", "print a job's host log (or guest log)", runRunsLogs},
		{"gc", "keep the newest runs, remove the rest", runRunsGC},
	})
}

const runsHelp = `Runs are read from the state root: --state-root DIR, else $PIKACI_STATE_ROOT,
else ./.pikaci. Each run is runs/<run_id>/ with run.json and, per job,
jobs/<job>/{status.json,host.log,artifacts/guest.log}; records written by
the original pikaci read the same. pikaci's list, status, logs and gc read
the same records and print them as the original does.`

// stateRootFlag registers --state-root with PIKACI_STATE_ROOT as default.
func (c *cli) stateRootFlag(fsName, usage string) (*flag.FlagSet, *string) {
	cfg := defaultExecConfig()
	cfg.fromEnv(c.env)
	fs := c.flagSet(fsName, usage)
	root := fs.String("state-root", cfg.StateRoot, "state `DIR` holding runs/ (env PIKACI_STATE_ROOT)")
	return fs, root
}

const stateRootNote = `The state root is --state-root DIR (here or before the command), else
$PIKACI_STATE_ROOT, else ./.pikaci. Log and record paths that a run.json
names but that do not exist on this host (records copied from another
machine) are looked for under STATE/runs/<run_id>/ instead.`

// oneRunArg parses `CMD RUN_ID [flags]` and loads the run.
func (c *cli) oneRunArg(fs *flag.FlagSet, root *string, args []string) (model.RunRecord, int, bool) {
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return model.RunRecord{}, code, true
	}
	if len(pos) != 1 {
		return model.RunRecord{}, c.usageErr(fs, "expected one RUN_ID, got %d arguments", len(pos)), true
	}
	r, err := run.LoadRun(*root, pos[0])
	if err != nil {
		return r, c.fail(exitUsage, "%v", notFoundRun(err, *root, pos[0])), true
	}
	return r, 0, false
}

func (c *cli) writeJSON(v any) int {
	b, err := model.EncodeFile(v)
	if err != nil {
		return c.fail(exitUsage, "encode JSON: %v", err)
	}
	c.stdout.Write(b)
	return exitOK
}

const gcUsage = `gc [--keep-runs N] [--state-root DIR]

Removes old runs as pikaci gc does: sorts the directories under STATE/runs
by name, newest first, keeps the first N and removes the rest, with or
without run.json. Prints removed_runs=<count>, then the removed run ids.

` + stateRootNote

func runGC(_ context.Context, c *cli, args []string) int { return c.gc("gc", gcUsage, args) }

// gc is `gc` and its alias `runs gc`.
func (c *cli) gc(name, usage string, args []string) int {
	fs, root := c.stateRootFlag(name, usage)
	keep := fs.Int("keep-runs", 10, "how many of the newest runs to keep")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *keep < 0 {
		return c.usageErr(fs, "--keep-runs: expected a number >= 0, got %d", *keep)
	}
	removed, err := run.GC(*root, *keep)
	fmt.Fprintf(c.stdout, "removed_runs=%d\n", len(removed))
	for _, id := range removed {
		fmt.Fprintln(c.stdout, id)
	}
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	return exitOK
}

func runRunsGC(c *cli, args []string) int {
	return c.gc("runs gc", "runs gc [--keep-runs N] [--state-root DIR]", args)
}

func notFoundRun(err error, root, id string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no run %q under %s", id, run.NewStore(root).RunsDir())
	}
	return err
}
