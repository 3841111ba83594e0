package main

// pikaci's commands that only pikaci has (docs/CONTRACTS.md, "pikaci's
// command line"), with the original's output formats: prepared-outputs and
// staged-linux-target-info. Its status, logs, list and gc are reads of the
// runs group (runshow.go, runlogs.go, runlist.go, runs.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/targets"
)

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
