package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/model"
)

// The staged prepared-output pipeline of the original, local path
// (docs/CONTRACTS.md, "Staged outputs"): the plan is a DAG of prepare nodes
// (shared `prepare-<prefix>-workspace-deps|-build` Nix builds, one
// `prepare-<job>-runner` per Incus job) and execute nodes; prepare nodes
// run one at a time in dependency order before any job starts; each
// realized output is exposed to its jobs as a symlink
// `jobs/<job>/staged-linux-rust/<role>` and recorded in
// prepared-outputs.json.

// OutputBuilder realizes a Nix output on the host: it builds installable
// (or finds it already in the store) and returns its store path. The
// build's output goes to log as it comes.
type OutputBuilder interface {
	Realize(ctx context.Context, installable string, log io.Writer) (RealizedOutput, error)
}

// RealizedOutput is a built output.
type RealizedOutput struct {
	Path string // /nix/store/…
	// Reused is true when the store already had the output, so nothing
	// was built.
	Reused bool
}

// BuildExitError is an OutputBuilder's error for a build command that
// ran and failed; Code is nil when it was killed by a signal.
type BuildExitError struct {
	Code *int
	Err  error
}

func (e *BuildExitError) Error() string { return e.Err.Error() }
func (e *BuildExitError) Unwrap() error { return e.Err }

// RunnerPreparer checks, in a job's `prepare-<job>-runner` node, that the
// backend can run the job: its project is set, its image is there. An
// error fails the prepare node with the original's messages.
type RunnerPreparer interface {
	PrepareRunner(ctx context.Context, job executor.Job) error
}

// Staged payload roles, in build order, and what their nodes build.
var stagedRoles = []struct {
	role, description string
	output            func(p *PlannedJob) string
}{
	{"workspace-deps", "Build staged Linux Rust dependencies", func(p *PlannedJob) string { return p.StagedLinux.WorkspaceDepsOutput }},
	{"workspace-build", "Build staged Linux Rust test artifacts", func(p *PlannedJob) string { return p.StagedLinux.WorkspaceBuildOutput }},
}

// Exact messages of the original.
const (
	prepareSchedulerNode   = "prepare-scheduler"
	msgNoReadyPrepareNodes = "no ready prepare nodes; unresolved dependencies in run plan"
)

// prepareNode is one prepare node of the plan: its record says what it
// is (id, dependencies, and for a Nix build node the installable, output
// and the consuming jobs' staged-linux-rust/<role> mounts).
type prepareNode struct {
	record model.PlanNodeRecord
	logs   []*jobState // nix build nodes: consuming jobs, for their host logs
	job    *jobState   // runner nodes
}

func (n *prepareNode) isNix() bool { return n.job == nil }

func (n *prepareNode) id() string { return n.record.ID }

// line writes a "[pikaci] …" line to the host log of every job the node
// serves, shown live once (sharedlog.go).
func (n *prepareNode) line(format string, a ...any) {
	sharedLine(n.consumers(), format, a...)
}

func (n *prepareNode) consumers() []*jobState {
	if n.job != nil {
		return []*jobState{n.job}
	}
	return n.logs
}

// buildPlan makes the prepare nodes and plan.json's record.
func (st *runState) buildPlan(plan Plan, jobs []*jobState, snapshot string) (model.RunPlanRecord, []*prepareNode, error) {
	var nodes []*prepareNode
	byID := map[string]*prepareNode{}
	var execs []model.PlanNodeRecord
	hostLocal := model.PlacementLocal
	hostRuntime := model.RuntimeHostProcess
	for _, js := range jobs {
		pj := &js.plan
		if pj.StagedLinux != nil {
			prev := ""
			for _, r := range stagedRoles {
				id := "prepare-" + pj.StagedLinux.PrepareNodePrefix + "-" + r.role
				mount := filepath.Join(js.dir, "staged-linux-rust", r.role)
				n := byID[id]
				if n == nil {
					var deps []string
					if prev != "" {
						deps = []string{prev}
					}
					output := r.output(pj)
					installable := "path:" + snapshot + "#" + output
					desc := r.description
					if d := pj.StagedLinux.PrepareDescription; d != "" {
						desc += " for " + d
					}
					n = &prepareNode{}
					n.record = model.PlanNodeRecord{Kind: model.PlanNodePrepare, ID: id, Description: desc,
						Executor: model.ExecutorHostLocal, Placement: &hostLocal, Runtime: &hostRuntime, DependsOn: deps,
						Prepare: &model.PrepareNode{Type: model.PrepareNixBuild, Installable: installable, OutputName: output,
							Residency: model.ResidencyRemoteStagedLinux,
							Handoff:   &model.PreparedOutputHandoff{Protocol: model.HandoffNixStorePathV1}}}
					nodes = append(nodes, n)
					byID[id] = n
				}
				n.logs = append(n.logs, js)
				n.record.Prepare.Handoff.Exposures = append(n.record.Prepare.Handoff.Exposures, model.PreparedOutputExposure{
					Kind: model.ExposureHostSymlinkMount, Path: mount, Access: model.ExposureReadOnly})
				js.dependsOn = append(js.dependsOn, id)
				js.payloads = append(js.payloads, executor.StagedPayload{Role: r.role, MountPath: mount})
				prev = id
			}
		}
		if pj.Runtime.IsIncus() {
			id := "prepare-" + pj.ID + "-runner"
			n := &prepareNode{job: js}
			n.record = model.PlanNodeRecord{Kind: model.PlanNodePrepare, ID: id,
				Description: fmt.Sprintf("Prepare remote Linux VM backend for `%s`", pj.ID),
				Executor:    model.ExecutorHostLocal, Placement: &hostLocal, Runtime: &hostRuntime,
				Prepare: &model.PrepareNode{Type: model.PrepareRemoteLinuxVMBackend, Backend: model.BackendIncus}}
			nodes = append(nodes, n)
			byID[id] = n
			js.dependsOn = append(js.dependsOn, id)
		}
		exec, err := executeNode(pj)
		if err != nil {
			return model.RunPlanRecord{}, nil, err
		}
		execs = append(execs, model.PlanNodeRecord{Kind: model.PlanNodeExecute, ID: *js.template.PlanNodeID,
			Description: pj.Description, Executor: js.template.Executor, Placement: pj.Placement, Runtime: js.template.Runtime,
			DependsOn: append([]string{}, js.dependsOn...), Execute: &exec})
	}
	rec := model.RunPlanRecord{SchemaVersion: model.PlanSchemaVersion, RunID: st.rec.RunID,
		TargetID: st.rec.TargetID, TargetDescription: st.rec.TargetDescription, CreatedAt: st.rec.CreatedAt,
		Scope:         model.PlanScopePostSetupAndSnap,
		Preconditions: []string{model.PlanPreconditionHostSetup, model.PlanPreconditionSnapshotMade}}
	for _, n := range nodes {
		rec.Nodes = append(rec.Nodes, n.record)
	}
	rec.Nodes = append(rec.Nodes, execs...)
	return rec, nodes, nil
}

// executeNode is a job's execute action: the raw command of a host-local
// job, the compiled guest command of any other.
func executeNode(pj *PlannedJob) (model.ExecuteNode, error) {
	if pj.Runtime.Kind == model.RuntimeHostProcess {
		if pj.Command.Kind != model.CmdHostShell {
			return model.ExecuteNode{}, fmt.Errorf("host-local job `%s` must use GuestCommand::HostShellCommand", pj.ID)
		}
		return model.ExecuteNode{Type: model.ExecuteHostCommand, Command: pj.Command.Command,
			TimeoutSecs: pj.TimeoutSecs, WritableWorkspace: pj.Writable}, nil
	}
	cmd, root, err := pj.Command.Compile()
	if err != nil {
		return model.ExecuteNode{}, fmt.Errorf("job `%s`: %w", pj.ID, err)
	}
	return model.ExecuteNode{Type: model.ExecuteVMCommand, Command: cmd, RunAsRoot: root,
		TimeoutSecs: pj.TimeoutSecs, WritableWorkspace: pj.Writable}, nil
}

// writePlan writes plan.json and an empty prepared-outputs.json and points
// run.json at them.
func (st *runState) writePlan(rec model.RunPlanRecord) error {
	runID := st.rec.RunID
	planPath := filepath.Join(st.store.RunDir(runID), "plan.json")
	if err := st.store.WriteRunFile(runID, "plan.json", rec); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	st.outputs = model.PreparedOutputsRecord{SchemaVersion: model.PlanSchemaVersion}
	outPath, err := st.writeOutputs()
	if err != nil {
		return err
	}
	consumer := model.ConsumerHostLocalSymlinkV1
	st.mu.Lock()
	st.rec.PlanPath, st.rec.PreparedOutputsPath, st.rec.PreparedOutputConsumer = &planPath, &outPath, &consumer
	st.mu.Unlock()
	return st.writeRun()
}

func (st *runState) writeOutputs() (string, error) {
	if err := st.store.WriteRunFile(st.rec.RunID, "prepared-outputs.json", st.outputs); err != nil {
		return "", fmt.Errorf("write prepared outputs: %w", err)
	}
	return filepath.Join(st.store.RunDir(st.rec.RunID), "prepared-outputs.json"), nil
}

// prepare runs the prepare nodes one at a time, each once its
// dependencies are done. It returns the failed node's id and error.
func (st *runState) prepare(ctx context.Context, jobs []*jobState, nodes []*prepareNode) (string, error) {
	done := map[string]uint64{}
	defer func() {
		for _, js := range jobs {
			for _, d := range js.dependsOn {
				js.prepMS += done[d]
			}
		}
	}()
	pending := append([]*prepareNode{}, nodes...)
	for len(pending) > 0 {
		i := readyNode(pending, done)
		if i < 0 {
			return prepareSchedulerNode, errors.New(msgNoReadyPrepareNodes)
		}
		n := pending[i]
		pending = append(pending[:i], pending[i+1:]...)
		start := st.r.now()
		var err error
		if n.isNix() {
			err = st.prepareOutput(ctx, n)
		} else {
			err = st.prepareRunner(ctx, n)
		}
		done[n.id()] = st.recordPrepare(n.id(), start)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			return n.id(), err
		}
	}
	return "", nil
}

func readyNode(pending []*prepareNode, done map[string]uint64) int {
	for i, n := range pending {
		ready := true
		for _, d := range n.record.DependsOn {
			if _, ok := done[d]; !ok {
				ready = false
			}
		}
		if ready {
			return i
		}
	}
	return -1
}

// prepareRunner resolves the job's guest role and image alias and lets the
// backend check it can run the job.
func (st *runState) prepareRunner(ctx context.Context, n *prepareNode) error {
	js := n.job
	img, err := model.ResolveIncusImage(st.r.env(), js.plan.ID, js.plan.Runtime)
	if err != nil {
		return err
	}
	js.image = img
	p, ok := st.opt.Exec.(RunnerPreparer)
	if !ok {
		return nil
	}
	return p.PrepareRunner(ctx, st.executorJob(js, ""))
}

// prepareOutput builds one staged output and hands it to its jobs.
func (st *runState) prepareOutput(ctx context.Context, n *prepareNode) error {
	logs := sharedLogs(n.logs) // in every host.log, live once
	firstLog := n.logs[0].template.HostLogPath
	node := n.record.Prepare
	output, installable := node.OutputName, node.Installable
	if st.r.Outputs == nil {
		return fmt.Errorf("staged prepare `%s` needs Nix, and this runner has no Nix builder configured", output)
	}
	n.line("prepare %s: nix build %s", output, installable)
	out, err := st.r.Outputs.Realize(ctx, installable, io.MultiWriter(logs...))
	var exit *BuildExitError
	switch {
	case errors.As(err, &exit):
		code := "None"
		if exit.Code != nil {
			code = fmt.Sprintf("Some(%d)", *exit.Code)
		}
		return fmt.Errorf("staged prepare `%s` failed with %s; see %s", output, code, firstLog)
	case err != nil:
		return fmt.Errorf("run staged prepare `%s`: %w", output, err)
	}
	if out.Reused {
		n.line("staged Linux Rust output %s was already in the Nix store; nothing was built", output)
	}
	n.line("staged Linux Rust output ready: %s -> %s", output, out.Path)
	rec := model.RealizedPreparedOutputRecord{NodeID: n.id(), Installable: installable, OutputName: output,
		Protocol: model.HandoffNixStorePathV1, Residency: model.ResidencyRemoteStagedLinux,
		Consumer: model.ConsumerHostLocalSymlinkV1, RealizedPath: out.Path}
	// The node's exposures are its consumers' mounts, in plan order.
	for _, e := range node.Handoff.Exposures {
		if err := repointMount(e.Path, out.Path); err != nil {
			return err
		}
		n.line("prepared output consumer=%s exposed %s -> %s", model.ConsumerHostLocalSymlinkV1, e.Path, out.Path)
		rec.Exposures = append(rec.Exposures, e)
	}
	if m, err := executor.ReadPayloadManifest(out.Path); err == nil {
		rec.Payload = &m
	} else {
		n.line("payload manifest of %s unavailable: %v", out.Path, err)
	}
	st.outputs.Upsert(rec)
	path, err := st.writeOutputs()
	if err != nil {
		return err
	}
	n.line("prepared output handoff recorded via %s: %s (%s)", model.ConsumerHostLocalSymlinkV1, output, path)
	st.log.Info("prepared output ready", zap.String("node", n.id()), zap.String("path", out.Path), zap.Bool("reused", out.Reused))
	return nil
}

// repointMount makes mount a symlink to target, replacing what was there.
func repointMount(mount, target string) error {
	if err := os.MkdirAll(filepath.Dir(mount), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(mount), err)
	}
	if _, err := os.Lstat(mount); err == nil {
		if err := os.RemoveAll(mount); err != nil {
			return fmt.Errorf("remove %s: %w", mount, err)
		}
	}
	if err := os.Symlink(target, mount); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", mount, target, err)
	}
	return nil
}

// stopAfterPrepare fails the jobs that depend on the failed node and skips
// the rest, with the original's messages.
func (st *runState) stopAfterPrepare(jobs []*jobState, node string, err error) {
	now := model.At(st.r.now())
	msg := strings.TrimSpace(err.Error())
	for _, js := range jobs {
		rec := js.template
		rec.StartedAt, rec.FinishedAt = now, &now
		rec.PreExecutionPrepareDurationMS = nonZero(js.prepMS)
		if slices.Contains(js.dependsOn, node) {
			rec.Status = model.StatusFailed
			rec.Message = strPtr(fmt.Sprintf("prepare node `%s` failed before execute: %s", node, msg))
		} else {
			rec.Status = model.StatusSkipped
			rec.Message = strPtr(fmt.Sprintf("not run because prepare phase stopped after `%s` failed: %s", node, msg))
		}
		js.hostLog.line("%s", *rec.Message)
		js.hostLog.Close()
		if werr := st.upsertJob(rec); werr != nil {
			st.log.Error("write job record", zap.String("job", js.plan.ID), zap.Error(werr))
		}
	}
	st.mu.Lock()
	st.rec.Status = model.StatusFailed
	st.mu.Unlock()
}
