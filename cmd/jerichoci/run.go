package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"jerichoci/executor"
	"jerichoci/internal/writers"
	"jerichoci/model"
	"jerichoci/run"
)

const runUsage = `run LANE|TARGET [--source DIR] [--state-root DIR] [--output text|jsonl|human|json] [--catalog FILE]

Runs every job of the lane (by its CI title, e.g. check-pika-rust) or target
(by id) in its own Incus instance, shows each job's status and output live,
and writes the run record under STATE/runs/<run_id>/run.json, as the original
pikaci does. --output jsonl prints the lifecycle events as they happen;
human and json are pikaci's formats, printed when the run ends: human a
"<run_id> <job_id> <status>" line per job (each job's message on stderr),
json the final run record. Exit status: 0 passed (or skipped by filters),
1 failed, 2 bad usage or an infrastructure error, 130 interrupted
(SIGINT/SIGTERM: running instances are deleted and the record says
cancelled).`

// runOutputs are the --output formats of run and rerun: ours (text, the
// live view, and jsonl, the lifecycle events) and pikaci's (human, json).
var runOutputs = []string{"text", "jsonl", "human", "json"}

const runOutputHelp = "`FORMAT` of standard output: text (live status and job output), jsonl (lifecycle events), human or json (pikaci's: job status lines, or the final run record)"

func runRun(ctx context.Context, c *cli, args []string) int {
	cfg := defaultExecConfig()
	cfg.fromEnv(c.env)
	fs := c.flagSet("run", runUsage)
	cfg.flags(fs)
	source := fs.String("source", ".", "source tree `DIR` to snapshot into the guest")
	output := fs.String("output", "text", runOutputHelp)
	catalog := fs.String("catalog", "", catalogFlagHelp)
	name, code, done := c.parseLaneArgs(fs, args, output, runOutputs...)
	if done {
		return code
	}
	lr, code, done := c.newLocalRun(cfg, *output)
	if done {
		return code
	}
	cat, err := c.loadCatalog(*catalog)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	target, err := cat.Resolve(name)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	src, err := sourceDir(*source)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	return c.runLocal(ctx, lr, run.NewPlan(target, src, run.ReadGit(ctx, src), nil), nil)
}

// localRun is what run and rerun share: the configuration, the absolute
// state root and the output format.
type localRun struct {
	cfg       execConfig
	stateRoot string
	output    string
}

// newLocalRun checks the configuration and makes the state root absolute.
func (c *cli) newLocalRun(cfg execConfig, output string) (localRun, int, bool) {
	if err := cfg.Validate(); err != nil {
		return localRun{}, c.fail(exitUsage, "invalid configuration:\n%v", err), true
	}
	stateRoot, err := filepath.Abs(cfg.StateRoot)
	if err != nil {
		return localRun{}, c.fail(exitUsage, "--state-root %q: %v", cfg.StateRoot, err), true
	}
	return localRun{cfg: cfg, stateRoot: stateRoot, output: output}, 0, false
}

// runLocal executes plan with the local backends, prints it in the output
// format and returns the exit status. adjust, when set, may change the
// runner before the run (rerun snapshots the earlier run's tree).
func (c *cli) runLocal(ctx context.Context, lr localRun, plan run.Plan, adjust func(*run.Runner)) int {
	log := lr.cfg.logger()
	defer log.Sync() //nolint:errcheck // stderr

	exec, closeExec := c.localExecutor(ctx, lr.cfg, lr.stateRoot, log)
	defer closeExec()
	infra := &run.InfraWatch{JobExecutor: exec}

	runner := c.localRunner(lr.cfg, lr.stateRoot, log)
	if adjust != nil {
		adjust(runner)
	}
	opt := run.RunOptions{Exec: infra, Log: log.Named("run")}
	var view *liveView
	if lr.output == "text" || lr.output == "jsonl" {
		view = newLiveView(c.stdout, lr.output, plan)
		opt.Events = view
		if lr.output == "text" {
			opt.JobOutput = view.jobOutput
		}
	}
	rec, err := runner.Run(ctx, plan, opt)
	if view != nil {
		view.close()
	}
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	return c.reportRun(ctx, lr.output, rec, runner.Store().RunPath(rec.RunID), infra.Failed())
}

// reportRun prints a finished run in the output format (text and jsonl have
// shown it as it ran) and returns the exit status.
func (c *cli) reportRun(ctx context.Context, output string, rec model.RunRecord, path string, infraFailed bool) int {
	switch output {
	case "text":
		fmt.Fprintf(c.stdout, "%s\nrun record: %s\n", summary(rec), path)
	case "human":
		c.humanSummary(rec)
	case "json":
		if code := c.writeJSON(rec); code != exitOK {
			return code
		}
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(c.stderr, "jerichoci: the run was interrupted; its instances were deleted and its record says cancelled")
		return exitInterrupted
	case rec.Status != model.StatusFailed:
		return exitOK
	case infraFailed:
		if output == "text" {
			fmt.Fprintln(c.stderr, "jerichoci: the run failed on an infrastructure error (exit 2); see the job messages above")
		}
		return exitUsage
	}
	return exitFailed
}

// humanSummary is pikaci's human output: "<run_id> <job_id> <status>" per
// job on stdout and the job's message on stderr; without jobs,
// "<run_id> <target|-> <status>" and the run's message.
func (c *cli) humanSummary(r model.RunRecord) {
	if len(r.Jobs) == 0 {
		fmt.Fprintf(c.stdout, "%s %s %s\n", r.RunID, orDash(r.TargetID), r.Status)
		if r.Message != nil {
			fmt.Fprintln(c.stderr, *r.Message)
		}
		return
	}
	for _, j := range r.Jobs {
		fmt.Fprintf(c.stdout, "%s %s %s\n", r.RunID, j.ID, j.Status)
		if j.Message != nil {
			fmt.Fprintln(c.stderr, *j.Message)
		}
	}
}

// brokenExecutor fails every job with the error that kept the backend from
// starting, so the run is still recorded.
type brokenExecutor struct{ err error }

func (b brokenExecutor) Execute(context.Context, executor.Job) (executor.Result, error) {
	return executor.Result{}, b.err
}

// summary renders the CI-page line: "2 passed 1 failed 1 skipped, ran 14s".
func summary(r model.RunRecord) string {
	counts := map[model.RunStatus]int{}
	for _, j := range r.Jobs {
		counts[j.Status]++
	}
	var parts []string
	for _, s := range []model.RunStatus{model.StatusPassed, model.StatusFailed, model.StatusSkipped} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no jobs")
	}
	ran := time.Duration(0)
	if r.FinishedAt != nil {
		ran = r.FinishedAt.Sub(r.CreatedAt.Time)
	}
	line := fmt.Sprintf("%s %s, ran %s", strings.ToUpper(string(r.Status)), strings.Join(parts, " "), roundDuration(ran))
	if r.Message != nil {
		line += "\n" + *r.Message
	}
	return line
}

func roundDuration(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// liveView prints lifecycle events as they happen: status lines and job
// output in text mode, the events themselves in jsonl mode.
type liveView struct {
	mu      sync.Mutex
	w       io.Writer
	jsonl   bool
	started map[string]time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	jobs    []string
}

func newLiveView(w io.Writer, format string, plan run.Plan) *liveView {
	v := &liveView{w: w, jsonl: format == "jsonl", started: map[string]time.Time{}, stop: make(chan struct{})}
	if !plan.FilterMiss { // a run skipped by its filters queues nothing
		for _, j := range plan.Jobs {
			v.jobs = append(v.jobs, j.ID)
		}
	}
	if !v.jsonl {
		v.wg.Add(1)
		go v.ticker()
	}
	return v
}

// ticker repeats the running jobs' elapsed time, so a quiet job still shows life.
func (v *liveView) ticker() {
	defer v.wg.Done()
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			return
		case now := <-t.C:
			v.mu.Lock()
			for _, id := range v.jobs {
				if s, ok := v.started[id]; ok {
					fmt.Fprintf(v.w, "  %-8s %s (%s)\n", "running", id, now.Sub(s).Round(time.Second))
				}
			}
			v.mu.Unlock()
		}
	}
}

func (v *liveView) close() {
	close(v.stop)
	v.wg.Wait()
}

func (v *liveView) Emit(_ context.Context, ev model.LifecycleEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.jsonl {
		b, err := model.EncodeCompact(ev)
		if err == nil {
			v.w.Write(b)
		}
		return
	}
	switch ev.Event {
	case model.EventRunStarted:
		fmt.Fprintf(v.w, "run %s: %s (%d jobs)\n", ev.RunID, model.Value(ev.TargetID), len(v.jobs))
		for _, id := range v.jobs {
			fmt.Fprintf(v.w, "  %-8s %s\n", "queued", id)
		}
	case model.EventJobStarted:
		v.started[ev.Job.ID] = ev.Job.StartedAt.Time
		fmt.Fprintf(v.w, "  %-8s %s\n", "running", ev.Job.ID)
	case model.EventJobFinished:
		delete(v.started, ev.Job.ID)
		took := time.Duration(0)
		if ev.Job.FinishedAt != nil {
			took = ev.Job.FinishedAt.Sub(ev.Job.StartedAt.Time)
		}
		fmt.Fprintf(v.w, "  %-8s %s (%s) %s\n", ev.Job.Status, ev.Job.ID, roundDuration(took), model.Value(ev.Job.Message))
	case model.EventRunFinished:
		for _, j := range ev.Run.Jobs {
			if j.Status == model.StatusSkipped {
				fmt.Fprintf(v.w, "  %-8s %s %s\n", "skipped", j.ID, model.Value(j.Message))
			}
		}
	}
}

// jobOutput prefixes each line of a job's host log with the job id.
func (v *liveView) jobOutput(jobID string) io.Writer {
	return &viewLines{v: v, lines: newLinePrefixer(v.w, jobID)}
}

// viewLines is a job's output in the live view: whole lines, written under
// the view's lock.
type viewLines struct {
	v     *liveView
	lines *writers.Lines
}

func (o *viewLines) Write(p []byte) (int, error) {
	o.v.mu.Lock()
	defer o.v.mu.Unlock()
	return o.lines.Write(p)
}

// newLinePrefixer writes a job's output to w as "    <job> | <line>",
// whole lines of at most writers.DefaultMaxLine bytes; the caller
// serialises its use.
func newLinePrefixer(w io.Writer, job string) *writers.Lines {
	return writers.NewPrefixer(w, "    "+job+" | ", writers.DefaultMaxLine)
}
