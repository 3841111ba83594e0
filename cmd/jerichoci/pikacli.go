package main

// pikaci's own commands over the state root (docs/CONTRACTS.md, "pikaci's
// command line"), with the original's output formats: status, logs, list,
// gc, prepared-outputs and staged-linux-target-info. `runs list|show|logs|gc`
// stay as our friendlier views of the same records.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/targets"
)

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

const statusUsage = `status RUN_ID [--json] [--state-root DIR]

Prints the run as pikaci status does: "<run_id> <target|-> <status>", then
plan=, prepared_outputs= and the prepared_output_* settings that are set,
the run's message, changed_files=<n> when there are any, and
"<job_id> <status>" per job. --json prints run.json.

` + stateRootNote

func runStatus(_ context.Context, c *cli, args []string) int {
	fs, root := c.stateRootFlag("status", statusUsage)
	asJSON := fs.Bool("json", false, "print the run record (run.json) as JSON")
	r, code, done := c.oneRunArg(fs, root, args)
	if done {
		return code
	}
	if *asJSON {
		return c.writeJSON(r)
	}
	for _, l := range statusLines(r) {
		fmt.Fprintln(c.stdout, l)
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

const listUsage = `list [--state-root DIR]

Lists runs as pikaci list does, newest first by created_at, one per line:
"<run_id>\t<status>\t<target_id, else the first job's id, else ->\t<created_at>".
Run directories without run.json are left out; a run.json that cannot be
read is an error. 'jerichoci runs list' prints a table instead.

` + stateRootNote

func runList(_ context.Context, c *cli, args []string) int {
	fs, root := c.stateRootFlag("list", listUsage)
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "unexpected argument %q", pos[0])
	}
	runs, err := run.ListRuns(*root)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
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

const preparedOutputsUsage = `prepared-outputs RUN_ID [--json] [--state-root DIR]

Prints a run's prepared outputs as pikaci prepared-outputs does: run_id=,
schema_version=, outputs=, then per output a tab-separated row: node_id,
output_name, installable, consumer, realized_path, payload kind (- without a
payload manifest) and the number of payload entrypoints. The record is the
run's prepared_outputs_path, else STATE/runs/<run_id>/prepared-outputs.json.
--json prints the record.

` + stateRootNote

func runPreparedOutputs(_ context.Context, c *cli, args []string) int {
	fs, root := c.stateRootFlag("prepared-outputs", preparedOutputsUsage)
	asJSON := fs.Bool("json", false, "print the record (prepared-outputs.json) as JSON")
	r, code, done := c.oneRunArg(fs, root, args)
	if done {
		return code
	}
	fallback := filepath.Join(run.NewStore(*root).RunDir(r.RunID), "prepared-outputs.json")
	p := fallback
	if r.PreparedOutputsPath != nil {
		p = localPath(*r.PreparedOutputsPath, fallback)
	}
	if !isFile(p) {
		return c.fail(exitUsage, "prepared outputs not found for run `%s`", r.RunID)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	var rec model.PreparedOutputsRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return c.fail(exitUsage, "decode %s: %v", p, err)
	}
	if *asJSON {
		return c.writeJSON(rec)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "run_id=%s\nschema_version=%d\noutputs=%d\n", r.RunID, rec.SchemaVersion, len(rec.Outputs))
	for _, o := range rec.Outputs {
		kind, entrypoints := "-", 0
		if o.Payload != nil {
			kind, entrypoints = o.Payload.Kind, len(o.Payload.Entrypoints)
		}
		fmt.Fprintf(&sb, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", o.NodeID, o.OutputName, o.Installable, o.Consumer, o.RealizedPath, kind, entrypoints)
	}
	fmt.Fprint(c.stdout, sb.String())
	return exitOK
}

const stagedTargetInfoUsage = `staged-linux-target-info TARGET [--json] [--catalog FILE]

Prints what a staged Linux target's shared prepare phase builds, as pikaci
staged-linux-target-info does: target_id=, target_description= (quoted for
the shell), and payload_workspace-deps_installable= and
payload_workspace-build_installable= (.#<Nix output>). A staged target is
one whose jobs all have the same staged_linux block. --json prints
target_id, target_description, shared_prepare_node_prefix,
shared_prepare_description, the two output names, their system and their
installables.

` + catalogHelp

// stagedTargetInfo is the original's PikaStagedLinuxTargetInfoJson.
type stagedTargetInfo struct {
	TargetID                  string `json:"target_id"`
	TargetDescription         string `json:"target_description"`
	SharedPrepareNodePrefix   string `json:"shared_prepare_node_prefix"`
	SharedPrepareDescription  string `json:"shared_prepare_description"`
	WorkspaceDepsOutputName   string `json:"workspace_deps_output_name"`
	WorkspaceBuildOutputName  string `json:"workspace_build_output_name"`
	WorkspaceOutputSystem     string `json:"workspace_output_system"`
	WorkspaceDepsInstallable  string `json:"workspace_deps_installable"`
	WorkspaceBuildInstallable string `json:"workspace_build_installable"`
}

func runStagedLinuxTargetInfo(_ context.Context, c *cli, args []string) int {
	fs := c.flagSet("staged-linux-target-info", stagedTargetInfoUsage)
	asJSON := fs.Bool("json", false, "print the target's staged Linux settings as JSON")
	catalog := fs.String("catalog", "", catalogFlagHelp)
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "expected one TARGET, got %d arguments", len(pos))
	}
	cat, err := c.loadCatalog(*catalog)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	info, ok := stagedInfo(cat, pos[0])
	if !ok {
		return c.fail(exitUsage, "unsupported staged Linux Rust target `%s`", pos[0])
	}
	if *asJSON {
		return c.writeJSON(info)
	}
	fmt.Fprintf(c.stdout, "target_id=%s\ntarget_description=%s\npayload_workspace-deps_installable=%s\npayload_workspace-build_installable=%s\n",
		info.TargetID, shellQuote(info.TargetDescription), info.WorkspaceDepsInstallable, info.WorkspaceBuildInstallable)
	return exitOK
}

// stagedInfo describes a target whose jobs all share one staged_linux block
// with outputs named ci.<system>.<name> of one system.
func stagedInfo(cat *targets.Catalog, id string) (stagedTargetInfo, bool) {
	t, err := cat.Lookup(id)
	if err != nil || len(t.Jobs) == 0 {
		return stagedTargetInfo{}, false
	}
	s := t.Jobs[0].StagedLinux
	for _, j := range t.Jobs {
		if j.StagedLinux == nil || s == nil || *j.StagedLinux != *s {
			return stagedTargetInfo{}, false
		}
	}
	system, ok := outputSystem(s.WorkspaceDepsOutput)
	if other, ok2 := outputSystem(s.WorkspaceBuildOutput); !ok || !ok2 || other != system {
		return stagedTargetInfo{}, false
	}
	return stagedTargetInfo{
		TargetID: t.ID, TargetDescription: t.Description,
		SharedPrepareNodePrefix: s.PrepareNodePrefix, SharedPrepareDescription: s.PrepareDescription,
		WorkspaceDepsOutputName: s.WorkspaceDepsOutput, WorkspaceBuildOutputName: s.WorkspaceBuildOutput,
		WorkspaceOutputSystem:     system,
		WorkspaceDepsInstallable:  ".#" + s.WorkspaceDepsOutput,
		WorkspaceBuildInstallable: ".#" + s.WorkspaceBuildOutput,
	}, true
}

// outputSystem is <system> of a Nix output named ci.<system>.<name>.
func outputSystem(output string) (string, bool) {
	parts := strings.SplitN(output, ".", 3)
	if len(parts) != 3 || parts[0] != "ci" || parts[1] == "" || parts[2] == "" {
		return "", false
	}
	return parts[1], true
}

// shellQuote is the original's shell_escape: always single-quoted, an inner
// ' written as '"'"'.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
