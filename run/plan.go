package run

import (
	"context"
	"os/exec"
	"slices"
	"strings"

	"jerichoci/targets"
)

// GitState is what `jerichoci run` learns from the source tree's git.
type GitState struct {
	Head    *string
	Dirty   bool
	Changed []string // working-tree diff against HEAD plus untracked files
	OK      bool     // false when git or the repository is unavailable
}

// ReadGit asks git about dir; without git or a repository it returns OK false.
func ReadGit(ctx context.Context, dir string) GitState {
	out := func(args ...string) (string, bool) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		b, err := cmd.Output()
		return string(b), err == nil
	}
	head, ok := out("rev-parse", "--verify", "HEAD")
	if !ok {
		return GitState{}
	}
	h := strings.TrimSpace(head)
	st := GitState{Head: &h, OK: true}
	seen := map[string]bool{}
	for _, args := range [][]string{{"diff", "--name-only", "HEAD", "--"}, {"ls-files", "--others", "--exclude-standard"}} {
		o, ok := out(args...)
		if !ok {
			return GitState{}
		}
		for _, line := range strings.Split(o, "\n") {
			if line = strings.TrimSpace(line); line != "" && !seen[line] {
				seen[line] = true
				st.Changed = append(st.Changed, line)
			}
		}
	}
	st.Dirty = len(st.Changed) > 0
	return st
}

// MsgNoChangeDetection is recorded when a filtered target runs without git.
const MsgNoChangeDetection = "git change detection unavailable; running lane without filtering"

// NewPlan turns a catalog target into a plan. Changed files come from the
// job spec when given, else from git; a target with filters that match none
// of them is planned as a skipped run.
func NewPlan(t targets.Target, sourceRoot string, git GitState, changed []string) Plan {
	p := Plan{TargetID: t.ID, TargetDescription: t.Description, SourceRoot: sourceRoot,
		GitHead: git.Head, GitDirty: git.Dirty, Filters: append([]string{}, t.Filters...)}
	switch {
	case changed != nil:
		p.ChangedFiles = append([]string{}, changed...)
	case git.OK:
		p.ChangedFiles = append([]string{}, git.Changed...)
	}
	if len(t.Filters) > 0 {
		switch {
		case changed == nil && !git.OK:
			msg := MsgNoChangeDetection
			p.Message = &msg
		case !t.MatchesChanges(p.ChangedFiles):
			p.FilterMiss = true
		}
	}
	for _, j := range t.Jobs {
		pl := j.Placement
		p.Jobs = append(p.Jobs, PlannedJob{ID: j.ID, Description: j.Description, TimeoutSecs: j.TimeoutSecs,
			Command: j.Command, Runtime: j.Runtime, Placement: &pl, Executor: j.Executor, Staged: j.Staged, StagedLinux: j.StagedLinux, Writable: j.Writable,
			SecretEnv: slices.Clone(j.SecretEnv)})
	}
	return p
}

// SnapshotProfile is the snapshot profile of the plan's jobs, as the
// original picks it: followup if any staged job uses it, else rust if any
// job is staged, else full.
func (p Plan) SnapshotProfile() SnapshotProfile {
	profile := ProfileFull
	for _, j := range p.Jobs {
		if j.StagedLinux == nil {
			continue
		}
		if j.StagedLinux.SnapshotProfile == targets.SnapshotProfileFollowup {
			return ProfileFollowup
		}
		profile = ProfileRust
	}
	return profile
}
