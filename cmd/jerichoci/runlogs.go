package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"jerichoci/model"
	"jerichoci/run"
)

// logs and runs logs: a run's job logs, read where this host has them.

// localPath is where a path recorded in a run's records is on this host:
// the recorded path when it exists here, else fallback (the same file
// under this state root's run directory) when that exists, else the
// recorded path (fallback when none was recorded).
func localPath(recorded, fallback string) string {
	if recorded != "" {
		if _, err := os.Stat(recorded); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return recorded
		}
	}
	if _, err := os.Stat(fallback); err == nil || recorded == "" {
		return fallback
	}
	return recorded
}

// readRecorded reads a file a record names (see localPath); the error names
// every path tried.
func readRecorded(recorded, fallback string) ([]byte, error) {
	p := localPath(recorded, fallback)
	b, err := os.ReadFile(p)
	if err != nil && p != fallback && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (nor is it under the state root: %s)", err, fallback)
	}
	return b, err
}

const logsUsage = `logs RUN_ID [--job JOB] [--kind host|guest|both] [--metadata-json] [--state-root DIR]
   or: logs --follow JOB_ID [nats flags]   (a daemon job's output, live: logs --follow --help)

Prints a job's logs as pikaci logs does: "== host ==" and the host log, then
"== guest ==" and the guest log (artifacts/guest.log), each followed by a
newline. The job is the run's first unless --job names one. A log that
cannot be read is an error. --metadata-json prints, for the job (or every
job of the run), where its logs are on this host and whether they exist.

` + stateRootNote

func runLogs(ctx context.Context, c *cli, args []string) int {
	for i, a := range args {
		if a == "--follow" || a == "-follow" {
			return c.followLogs(ctx, append(append([]string{}, args[:i]...), args[i+1:]...))
		}
	}
	fs, root := c.stateRootFlag("logs", logsUsage)
	jobID := fs.String("job", "", "the `JOB` whose logs to print (default: the run's first job)")
	kind := fs.String("kind", "both", "which log: `host`, guest or both")
	metadata := fs.Bool("metadata-json", false, "print where the logs are (RunLogsMetadata JSON) instead of the logs")
	var jobSet bool
	r, code, done := c.oneRunArg(fs, root, args)
	if done {
		return code
	}
	fs.Visit(func(f *flag.Flag) { jobSet = jobSet || f.Name == "job" })
	if *kind != "host" && *kind != "guest" && *kind != "both" {
		return c.usageErr(fs, "--kind: expected host, guest or both, got %q", *kind)
	}
	store := run.NewStore(*root)
	var jobs []model.JobRecord
	switch {
	case jobSet:
		i := jobIndex(r, *jobID)
		if i < 0 {
			return c.fail(exitUsage, "%v", unknownJob(r, *jobID))
		}
		jobs = r.Jobs[i : i+1]
	case *metadata:
		jobs = r.Jobs
	case len(r.Jobs) == 0:
		return c.fail(exitUsage, "run `%s` has no jobs", r.RunID)
	default:
		jobs = r.Jobs[:1]
	}
	if *metadata {
		md := model.RunLogsMetadata{RunID: r.RunID, Status: r.Status, Jobs: []model.JobLogMetadata{}}
		for _, j := range jobs {
			host := localPath(j.HostLogPath, store.HostLogPath(r.RunID, j.ID))
			guest := localPath(j.GuestLogPath, store.GuestLogPath(r.RunID, j.ID))
			md.Jobs = append(md.Jobs, model.JobLogMetadata{ID: j.ID, HostLogPath: host, GuestLogPath: guest,
				HostLogExists: isFile(host), GuestLogExists: isFile(guest)})
		}
		return c.writeJSON(md)
	}
	j := jobs[0]
	var out []byte
	if *kind != "guest" {
		b, err := readRecorded(j.HostLogPath, store.HostLogPath(r.RunID, j.ID))
		if err != nil {
			return c.fail(exitUsage, "host log of job `%s` in run `%s`: %v", j.ID, r.RunID, err)
		}
		out = append(append(append(out, "== host ==\n"...), b...), '\n')
	}
	if *kind != "host" {
		b, err := readRecorded(j.GuestLogPath, store.GuestLogPath(r.RunID, j.ID))
		if err != nil {
			return c.fail(exitUsage, "guest log of job `%s` in run `%s`: %v", j.ID, r.RunID, err)
		}
		out = append(append(append(out, "== guest ==\n"...), b...), '\n')
	}
	c.stdout.Write(out)
	return exitOK
}

func jobIndex(r model.RunRecord, id string) int {
	for i, j := range r.Jobs {
		if j.ID == id {
			return i
		}
	}
	return -1
}

// unknownJob is the original's message with the run's jobs added.
func unknownJob(r model.RunRecord, id string) error {
	ids := make([]string, len(r.Jobs))
	for i, j := range r.Jobs {
		ids[i] = j.ID
	}
	has := "it has no jobs"
	if len(ids) > 0 {
		has = "its jobs: " + strings.Join(ids, ", ")
	}
	return fmt.Errorf("job `%s` not found in run `%s` (%s)", id, r.RunID, has)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
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
