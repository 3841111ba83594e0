package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"jerichoci/model"
)

// status and runs show: one run and its jobs. Both are one read
// (showRun); status prints pikaci's lines, runs show a table, and --json
// run.json.

const statusUsage = `status RUN_ID [--json] [--state-root DIR]

Prints the run as pikaci status does: "<run_id> <target|-> <status>", then
plan=, prepared_outputs= and the prepared_output_* settings that are set,
the run's message, changed_files=<n> when there are any, and
"<job_id> <status>" per job. --json prints run.json.

` + stateRootNote

// showFormat is how showRun prints a run.
type showFormat int

const (
	showStatus showFormat = iota // pikaci's status lines
	showTable                    // runs show: a summary and a table of the jobs
)

func runStatus(_ context.Context, c *cli, args []string) int {
	return c.showRun("status", statusUsage, showStatus, args)
}

func runRunsShow(c *cli, args []string) int {
	return c.showRun("runs show", "runs show RUN_ID [--state-root DIR] [--json]", showTable, args)
}

// showRun is the one read behind status and runs show; --json prints
// run.json for both.
func (c *cli) showRun(name, usage string, format showFormat, args []string) int {
	fs, root := c.stateRootFlag(name, usage)
	asJSON := fs.Bool("json", false, "print the run record (run.json) as JSON")
	r, code, done := c.oneRunArg(fs, root, args)
	if done {
		return code
	}
	switch {
	case *asJSON:
		return c.writeJSON(r)
	case format == showStatus:
		for _, l := range statusLines(r) {
			fmt.Fprintln(c.stdout, l)
		}
		c.statusReasons(r)
	default:
		c.printRunTable(r)
	}
	return exitOK
}

// statusLines are pikaci status's lines (crates/pikaci/src/output.rs).
func statusLines(r model.RunRecord) []string {
	lines := []string{fmt.Sprintf("%s %s %s", r.RunID, orDash(r.TargetID), r.Status)}
	for _, kv := range []struct {
		key string
		val *string
	}{
		{"plan", r.PlanPath},
		{"prepared_outputs", r.PreparedOutputsPath},
		{"prepared_output_consumer", r.PreparedOutputConsumer},
		{"prepared_output_mode", r.PreparedOutputMode},
		{"prepared_output_invocation_mode", r.PreparedOutputInvocationMode},
		// The original labels the wrapper program "launcher program".
		{"prepared_output_invocation_launcher_program", r.PreparedOutputInvocationWrapperProgram},
		{"prepared_output_launcher_transport_mode", r.PreparedOutputLauncherTransportMode},
		{"prepared_output_launcher_transport_program", r.PreparedOutputLauncherTransportProgram},
		{"prepared_output_launcher_transport_host", r.PreparedOutputLauncherTransportHost},
		{"prepared_output_launcher_transport_remote_launcher_program", r.PreparedOutputLauncherTransportRemoteLauncherProgram},
		{"prepared_output_launcher_transport_remote_helper_program", r.PreparedOutputLauncherTransportRemoteHelperProgram},
		{"prepared_output_launcher_transport_remote_work_dir", r.PreparedOutputLauncherTransportRemoteWorkDir},
	} {
		if kv.val != nil {
			lines = append(lines, kv.key+"="+*kv.val)
		}
	}
	if r.Message != nil {
		lines = append(lines, *r.Message)
	}
	if len(r.ChangedFiles) > 0 {
		lines = append(lines, fmt.Sprintf("changed_files=%d", len(r.ChangedFiles)))
	}
	for _, j := range r.Jobs {
		lines = append(lines, fmt.Sprintf("%s %s", j.ID, j.Status))
	}
	return lines
}

func orDash(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func runDuration(r model.RunRecord) string {
	if r.FinishedAt == nil {
		return "-"
	}
	return roundDuration(r.FinishedAt.Sub(r.CreatedAt.Time)).String()
}

// printRunTable is runs show's view: the run, then a table of its jobs.
func (c *cli) printRunTable(r model.RunRecord) {
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
}
