package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"text/tabwriter"

	"jerichoci/model"
	"jerichoci/run"
)

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
the original pikaci read the same.`

// stateRootFlag registers --state-root with PIKACI_STATE_ROOT as default.
func (c *cli) stateRootFlag(fsName, usage string) (*flag.FlagSet, *string) {
	cfg := defaultExecConfig()
	cfg.fromEnv(c.env)
	fs := c.flagSet(fsName, usage)
	root := fs.String("state-root", cfg.StateRoot, "state `DIR` holding runs/ (env PIKACI_STATE_ROOT)")
	return fs, root
}

func runRunsList(c *cli, args []string) int {
	fs, root := c.stateRootFlag("runs list", "runs list [--state-root DIR] [--json]")
	asJSON := fs.Bool("json", false, "print the run records as a JSON array")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "unexpected argument %q", pos[0])
	}
	runs, err := run.ListRuns(*root)
	if err != nil {
		fmt.Fprintf(c.stderr, "jerichoci: some run records could not be read:\n%v\n", err)
	}
	if *asJSON {
		if runs == nil {
			runs = []model.RunRecord{}
		}
		if code := c.writeJSON(runs); code != exitOK {
			return code
		}
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN ID\tSTATUS\tTARGET\tJOBS\tCREATED\tDURATION")
		for _, r := range runs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.RunID, r.Status, model.Value(r.TargetID), len(r.Jobs), r.CreatedAt, runDuration(r))
		}
		tw.Flush()
	}
	if err != nil {
		return exitUsage
	}
	return exitOK
}

func runDuration(r model.RunRecord) string {
	if r.FinishedAt == nil {
		return "-"
	}
	return roundDuration(r.FinishedAt.Sub(r.CreatedAt.Time)).String()
}

func runRunsShow(c *cli, args []string) int {
	fs, root := c.stateRootFlag("runs show", "runs show RUN_ID [--state-root DIR] [--json]")
	asJSON := fs.Bool("json", false, "print run.json as written")
	r, code, done := c.oneRunArg(fs, root, args)
	if done {
		return code
	}
	if *asJSON {
		return c.writeJSON(r)
	}
	fmt.Fprintf(c.stdout, "run %s  %s  %s\n", r.RunID, r.Status, model.Value(r.TargetID))
	if r.TargetDescription != nil {
		fmt.Fprintf(c.stdout, "  %s\n", *r.TargetDescription)
	}
	fmt.Fprintf(c.stdout, "  created %s, took %s, source %s\n", r.CreatedAt, runDuration(r), r.SourceRoot)
	if r.Message != nil {
		fmt.Fprintf(c.stdout, "  message: %s\n", *r.Message)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATUS\tEXIT\tDURATION\tIMAGE\tMESSAGE")
	for _, j := range r.Jobs {
		exit, took, img := "-", "-", "-"
		if j.ExitCode != nil {
			exit = fmt.Sprint(*j.ExitCode)
		}
		if j.FinishedAt != nil {
			took = roundDuration(j.FinishedAt.Sub(j.StartedAt.Time)).String()
		}
		if e := j.RemoteLinuxVMExecution; e != nil && e.IncusImage != nil {
			img = e.IncusImage.Project + "/" + e.IncusImage.Alias
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Status, exit, took, img, model.Value(j.Message))
	}
	tw.Flush()
	return exitOK
}

func runRunsLogs(c *cli, args []string) int {
	fs, root := c.stateRootFlag("runs logs", "runs logs RUN_ID [JOB_ID] [--guest] [--state-root DIR]")
	guest := fs.Bool("guest", false, "print the guest log (artifacts/guest.log) instead of the host log")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		return c.usageErr(fs, "expected RUN_ID [JOB_ID], got %d arguments", len(pos))
	}
	r, err := run.LoadRun(*root, pos[0])
	if err != nil {
		return c.fail(exitUsage, "%v", notFoundRun(err, *root, pos[0]))
	}
	jobs := r.Jobs
	if len(pos) == 2 {
		jobs = nil
		for _, j := range r.Jobs {
			if j.ID == pos[1] {
				jobs = append(jobs, j)
			}
		}
		if len(jobs) == 0 {
			return c.fail(exitUsage, "run %s has no job %q", r.RunID, pos[1])
		}
	}
	store := run.NewStore(*root)
	code = exitOK
	for _, j := range jobs {
		// Paths of records copied from another host are looked for here.
		p := localPath(j.HostLogPath, store.HostLogPath(r.RunID, j.ID))
		if *guest {
			p = localPath(j.GuestLogPath, store.GuestLogPath(r.RunID, j.ID))
		}
		if len(jobs) > 1 {
			fmt.Fprintf(c.stdout, "==> %s (%s) <==\n", j.ID, p)
		}
		f, err := os.Open(p)
		if err != nil {
			code = c.fail(exitUsage, "%v", err)
			continue
		}
		_, err = io.Copy(c.stdout, f)
		f.Close()
		if err != nil {
			code = c.fail(exitUsage, "read %s: %v", p, err)
		}
	}
	return code
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
