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
// Both are one read (printLogs); logs frames it as pikaci does, runs logs
// prints the logs as they are. logs --follow reads a daemon job's output
// live (follow.go).

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

// openRecorded opens a file a record names (see localPath); the error names
// every path tried.
func openRecorded(recorded, fallback string) (*os.File, error) {
	p := localPath(recorded, fallback)
	f, err := os.Open(p)
	if err != nil && p != fallback && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (nor is it under the state root: %s)", err, fallback)
	}
	return f, err
}

const logsUsage = `logs RUN_ID [--job JOB] [--kind host|guest|both] [--metadata-json] [--state-root DIR]
   or: logs --follow JOB_ID [--state-root DIR] [nats flags]

Prints a job's logs as pikaci logs does: "== host ==" and the host log, then
"== guest ==" and the guest log (artifacts/guest.log), each followed by a
newline. The job is the run's first unless --job names one. A log that
cannot be read is an error, and nothing is printed. --metadata-json prints,
for the job (or every job of the run), where its logs are on this host and
whether they exist. 'jerichoci runs logs' prints the logs without the
section lines.

With --follow, follows a daemon job's output as it is written, from the
start of what the logs stream still holds (a job someone else enqueued),
until its final record: the lines of its host.log as "    <job> | <line>",
then the result. Exit status: 0 passed (or skipped), 1 failed, 2 bad usage,
a job id no daemon knows (not queued, running or finished), no daemon or
NATS errors, 130 on Ctrl-C. The NATS flags go with --follow only.

` + stateRootNote

// runLogs is `logs`: pikaci's logs of a run, or with --follow a daemon
// job's live output.
func runLogs(ctx context.Context, c *cli, args []string) int {
	fs, ncfg := c.clientFlagSet("logs", logsUsage)
	// One --state-root: the runs read, and the daemon whose embedded
	// server's credentials --follow uses; both default to the state root.
	fs.Lookup("state-root").Usage = "state `DIR` holding runs/, and with --follow that of a daemon on this host whose embedded server's credentials (DIR/nats/client.json) are used (env PIKACI_STATE_ROOT)"
	follow := fs.Bool("follow", false, "follow the live output of the daemon job JOB_ID instead")
	jobID := fs.String("job", "", "the `JOB` whose logs to print (default: the run's first job)")
	kind := fs.String("kind", "both", "which log: `host`, guest or both")
	metadata := fs.Bool("metadata-json", false, "print where the logs are (RunLogsMetadata JSON) instead of the logs")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *follow {
		for _, n := range []string{"job", "kind", "metadata-json"} {
			if set[n] {
				return c.usageErr(fs, "--%s reads a run's records; --follow takes a JOB_ID", n)
			}
		}
		return c.followLogs(ctx, fs, ncfg, pos)
	}
	for n := range set {
		if strings.HasPrefix(n, "nats-") {
			return c.usageErr(fs, "--%s goes with --follow", n)
		}
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "expected one RUN_ID, got %d arguments", len(pos))
	}
	if *kind != "host" && *kind != "guest" && *kind != "both" {
		return c.usageErr(fs, "--kind: expected host, guest or both, got %q", *kind)
	}
	root := ncfg.StateRoot
	r, err := run.LoadRun(root, pos[0])
	if err != nil {
		return c.fail(exitUsage, "%v", notFoundRun(err, root, pos[0]))
	}
	jobs, err := logJobs(r, *jobID, set["job"], *metadata)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if *metadata {
		return c.writeJSON(logsMetadata(r, jobs, run.NewStore(root)))
	}
	return c.printLogs(r, jobs[:1], run.NewStore(root), *kind != "guest", *kind != "host", pikaciSections)
}

// runRunsLogs is `runs logs`: the logs of a run's jobs (or of one), as
// they are.
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
	var job string
	if len(pos) == 2 {
		job = pos[1]
	}
	jobs, err := logJobs(r, job, len(pos) == 2, true)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	return c.printLogs(r, jobs, run.NewStore(*root), !*guest, *guest, rawLogs)
}

// logJobs is the jobs whose logs are read: the job named (when named),
// else every job (all) or the run's first.
func logJobs(r model.RunRecord, name string, named, all bool) ([]model.JobRecord, error) {
	switch {
	case named:
		for i, j := range r.Jobs {
			if j.ID == name {
				return r.Jobs[i : i+1], nil
			}
		}
		return nil, unknownJob(r, name)
	case all:
		return r.Jobs, nil
	case len(r.Jobs) == 0:
		return nil, fmt.Errorf("run `%s` has no jobs", r.RunID)
	}
	return r.Jobs[:1], nil
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

// logsMetadata is where the jobs' logs are on this host and whether they
// exist.
func logsMetadata(r model.RunRecord, jobs []model.JobRecord, store *run.Store) model.RunLogsMetadata {
	md := model.RunLogsMetadata{RunID: r.RunID, Status: r.Status, Jobs: []model.JobLogMetadata{}}
	for _, j := range jobs {
		host := localPath(j.HostLogPath, store.HostLogPath(r.RunID, j.ID))
		guest := localPath(j.GuestLogPath, store.GuestLogPath(r.RunID, j.ID))
		md.Jobs = append(md.Jobs, model.JobLogMetadata{ID: j.ID, HostLogPath: host, GuestLogPath: guest,
			HostLogExists: isFile(host), GuestLogExists: isFile(guest)})
	}
	return md
}

// logsFraming is how printLogs frames the logs it prints.
type logsFraming int

const (
	// pikaciSections is pikaci's logs: "== host ==" (or guest) before
	// each log and a newline after it; when a log cannot be opened
	// nothing is printed.
	pikaciSections logsFraming = iota
	// rawLogs is runs logs: each log as it is, after a "==> JOB (PATH) <=="
	// line when there are several jobs; a log that cannot be opened is
	// reported and the others are printed.
	rawLogs
)

// logFile is one log printLogs prints.
type logFile struct {
	job            model.JobRecord
	kind           string // host or guest
	path, fallback string // as recorded, and under this state root
}

// printLogs prints the host and/or guest logs of jobs, framed as framing
// says; it is the one read behind logs and runs logs.
func (c *cli) printLogs(r model.RunRecord, jobs []model.JobRecord, store *run.Store, host, guest bool, framing logsFraming) int {
	var files []logFile
	for _, j := range jobs {
		if host {
			files = append(files, logFile{j, "host", j.HostLogPath, store.HostLogPath(r.RunID, j.ID)})
		}
		if guest {
			files = append(files, logFile{j, "guest", j.GuestLogPath, store.GuestLogPath(r.RunID, j.ID)})
		}
	}
	opened := make([]*os.File, len(files))
	defer func() {
		for _, f := range opened {
			if f != nil {
				f.Close()
			}
		}
	}()
	code := exitOK
	for i, lf := range files {
		f, err := openRecorded(lf.path, lf.fallback)
		if err != nil {
			code = c.fail(exitUsage, "%s log of job `%s` in run `%s`: %v", lf.kind, lf.job.ID, r.RunID, err)
			if framing == pikaciSections {
				return code
			}
			continue
		}
		opened[i] = f
	}
	for i, lf := range files {
		f := opened[i]
		if f == nil {
			continue
		}
		switch {
		case framing == pikaciSections:
			fmt.Fprintf(c.stdout, "== %s ==\n", lf.kind)
		case len(jobs) > 1:
			fmt.Fprintf(c.stdout, "==> %s (%s) <==\n", lf.job.ID, f.Name())
		}
		if _, err := io.Copy(c.stdout, f); err != nil {
			code = c.fail(exitUsage, "%s log of job `%s` in run `%s`: read %s: %v", lf.kind, lf.job.ID, r.RunID, f.Name(), err)
		}
		if framing == pikaciSections {
			fmt.Fprintln(c.stdout)
		}
	}
	return code
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
