// Package targets is the catalog of CI targets: what `jerichoci run <id>`
// runs. A target is an ordered list of jobs plus optional `pikaci run` path
// filters and, for targets the CI page shows, a lane title, trigger and
// concurrency group. The built-in catalog is the original pikaci's, kept as
// data in catalog/pika.json; a project adds or overrides targets with a
// local catalog file of the same shape (see Parse).
package targets

import (
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"sync"

	"jerichoci/internal/wording"
	"jerichoci/model"
)

// Trigger says when the CI forge runs a target's lane on its own.
type Trigger string

// Triggers. A target without a trigger runs only when asked for by id.
const (
	TriggerNone    Trigger = ""
	TriggerBranch  Trigger = "branch"  // on every branch push, subject to lane selection
	TriggerNightly Trigger = "nightly" // once a night; never selected from changed files
)

// String returns the trigger's JSON spelling, "none" for TriggerNone.
func (t Trigger) String() string {
	if t == TriggerNone {
		return "none"
	}
	return string(t)
}

// Snapshot profiles of staged jobs (docs/CONTRACTS.md, "Snapshots").
const (
	SnapshotProfileRust     = "rust"     // drops root ios/ and android/
	SnapshotProfileFollowup = "followup" // drops only root ios/
)

// StagedLinux is what a staged job's shared prepare phase builds
// (docs/CONTRACTS.md, "The original's catalog"): the prepare node prefix,
// the snapshot profile and the two Nix outputs staged under
// /staged/linux-rust/.
type StagedLinux struct {
	PrepareNodePrefix string `json:"prepare_node_prefix"`
	// PrepareDescription is the original's shared prepare description,
	// e.g. "pika_core staged Linux Rust lane"; prepare node descriptions
	// read "<what the node builds> for <it>".
	PrepareDescription   string `json:"prepare_description,omitempty"`
	SnapshotProfile      string `json:"snapshot_profile"`
	WorkspaceDepsOutput  string `json:"workspace_deps_output"`
	WorkspaceBuildOutput string `json:"workspace_build_output"`
}

// Job is one job of a target.
type Job struct {
	ID          string              `json:"id"`
	Description string              `json:"description,omitempty"`
	TimeoutSecs uint64              `json:"timeout_secs"`
	Command     model.JobCommand    `json:"command"`
	Runtime     model.RuntimeConfig `json:"runtime"`
	Placement   model.Placement     `json:"placement"`
	Executor    string              `json:"executor"` // model.ExecutorRemoteLinuxVM or model.ExecutorHostLocal
	// Staged is true when the job runs a prebuilt wrapper (command kind
	// "staged"); StagedLinux then says how its payload is prepared.
	Staged      bool         `json:"staged"`
	StagedLinux *StagedLinux `json:"staged_linux,omitempty"`
	Writable    bool         `json:"writable"`    // needs a writable workspace (Incus refuses these)
	RunAsRoot   bool         `json:"run_as_root"` // the compiled command runs as root
	// SecretEnv names environment variables the worker passes from its own
	// environment into the job's command; their values are masked in every
	// log line and never recorded (docs/SECURITY.md).
	SecretEnv []string `json:"secret_env,omitempty"`
}

// Target is a named, ordered list of jobs.
type Target struct {
	ID               string   `json:"id"`
	Description      string   `json:"description,omitempty"`
	Lane             string   `json:"lane,omitempty"` // the CI page's lane title; set iff Trigger is
	Trigger          Trigger  `json:"trigger,omitempty"`
	ConcurrencyGroup string   `json:"concurrency_group,omitempty"` // metadata; not enforced
	Filters          []string `json:"filters,omitempty"`           // `pikaci run` path filters, in order
	Jobs             []Job    `json:"jobs"`

	// Source names where the target was defined: BuiltinSource or the
	// catalog file's name.
	Source string `json:"-"`
	// LaneDefinitionPaths are the files that define the target's lane (from
	// its catalog file); changing one selects the lane (package lanes).
	LaneDefinitionPaths []string `json:"-"`
}

// AllStaged reports whether every job is staged, which lets a run execute
// jobs in parallel (docs/CONTRACTS.md, "Scheduling and fail-fast").
func (t Target) AllStaged() bool {
	for _, j := range t.Jobs {
		if !j.Staged {
			return false
		}
	}
	return len(t.Jobs) > 0
}

func (t Target) clone() Target {
	t.Filters = slices.Clone(t.Filters)
	t.LaneDefinitionPaths = slices.Clone(t.LaneDefinitionPaths)
	t.Jobs = slices.Clone(t.Jobs)
	for i := range t.Jobs {
		t.Jobs[i].SecretEnv = slices.Clone(t.Jobs[i].SecretEnv)
		if s := t.Jobs[i].StagedLinux; s != nil {
			c := *s
			t.Jobs[i].StagedLinux = &c
		}
		if in := t.Jobs[i].Runtime.Incus; in != nil {
			c := *in
			t.Jobs[i].Runtime.Incus = &c
		}
	}
	return t
}

// ErrUnknownTarget is matched (errors.Is) by every unknown-target error.
var ErrUnknownTarget = errors.New("unknown target")

// UnknownTargetError names a target id or lane title the catalog lacks. Its
// message is the original's, "unknown job `<name>`", followed by
// "; did you mean `<suggestion>`?" when the catalog has a close name.
type UnknownTargetError struct {
	Name       string
	Suggestion string // a close target id or lane title (wording.Suggest), or ""
}

func (e *UnknownTargetError) Error() string {
	if e.Suggestion != "" {
		return fmt.Sprintf("unknown job `%s`; did you mean `%s`?", e.Name, e.Suggestion)
	}
	return fmt.Sprintf("unknown job `%s`", e.Name)
}

// Is makes errors.Is(err, ErrUnknownTarget) true.
func (e *UnknownTargetError) Is(target error) bool { return target == ErrUnknownTarget }

// Catalog is an immutable, ordered set of targets with unique ids and lane
// titles. Build one with Builtin, Parse or Load, and combine with Merge.
type Catalog struct {
	name           string
	includeBuiltin bool
	targets        []Target
	byID           map[string]int
	byLane         map[string]int
}

// BuiltinSource is the Source of built-in targets and the built-in catalog's name.
const BuiltinSource = "built-in"

//go:embed catalog/pika.json
var builtinJSON []byte

var builtin = sync.OnceValue(func() *Catalog {
	c, err := Parse(BuiltinSource, builtinJSON)
	if err != nil {
		panic(fmt.Sprintf("targets: the built-in catalog is invalid: %v", err))
	}
	return c
})

// Builtin returns the original pikaci's catalog (minus the macOS Tart targets).
func Builtin() *Catalog { return builtin() }

func newCatalog(name string, ts []Target) *Catalog {
	c := &Catalog{name: name, includeBuiltin: true, targets: ts, byID: map[string]int{}, byLane: map[string]int{}}
	for i, t := range ts {
		c.byID[t.ID] = i
		if t.Lane != "" {
			c.byLane[t.Lane] = i
		}
	}
	return c
}

// Name is BuiltinSource, the catalog file's name, or for a merged catalog
// the names joined with " + ".
func (c *Catalog) Name() string { return c.name }

// IncludesBuiltin reports whether a catalog file asks to be merged over the
// built-in catalog (`include_builtin`, default true).
func (c *Catalog) IncludesBuiltin() bool { return c.includeBuiltin }

// Len is the number of targets.
func (c *Catalog) Len() int { return len(c.targets) }

// Targets returns copies of every target, in catalog order.
func (c *Catalog) Targets() []Target {
	out := make([]Target, len(c.targets))
	for i, t := range c.targets {
		out[i] = t.clone()
	}
	return out
}

// Lookup returns the target with this id, or an *UnknownTargetError.
func (c *Catalog) Lookup(id string) (Target, error) {
	if i, ok := c.byID[id]; ok {
		return c.targets[i].clone(), nil
	}
	return Target{}, c.unknown(id, c.IDs())
}

// LookupLane returns the target whose lane has this title, or an *UnknownTargetError.
func (c *Catalog) LookupLane(title string) (Target, error) {
	if i, ok := c.byLane[title]; ok {
		return c.targets[i].clone(), nil
	}
	return Target{}, c.unknown(title, c.LaneTitles())
}

// Resolve looks name up as a target id, then as a lane title.
func (c *Catalog) Resolve(name string) (Target, error) {
	if t, err := c.Lookup(name); err == nil {
		return t, nil
	}
	if t, err := c.LookupLane(name); err == nil {
		return t, nil
	}
	return Target{}, c.unknown(name, append(c.LaneTitles(), c.IDs()...))
}

// Merge returns a catalog of c's targets with over's laid on top: a target
// of over whose id is in c replaces it in place (whole, jobs and all); the
// others are appended in over's order. A lane title of over that another
// (not replaced) target of c already uses is an error naming over's entry.
func (c *Catalog) Merge(over *Catalog) (*Catalog, error) {
	ts := slices.Clone(c.targets)
	var errs []error
	var added []Target
	for _, t := range over.targets {
		if i, ok := c.byID[t.ID]; ok {
			ts[i] = t
		} else {
			added = append(added, t)
		}
	}
	ts = append(ts, added...)
	for _, t := range over.targets {
		i, used := c.byLane[t.Lane]
		if t.Lane == "" || !used {
			continue
		}
		prev := c.targets[i]
		if _, replaced := over.byID[prev.ID]; !replaced {
			errs = append(errs, &FieldError{File: over.name, Entry: over.entry(t.ID), Field: "lane",
				Msg: wording.About("lane", fmt.Sprintf("lane title %q is already used by target %q (%s)", t.Lane, prev.ID, prev.Source))})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return newCatalog(c.name+" + "+over.name, ts), nil
}

// entry describes a target of a parsed file the way field errors do.
func (c *Catalog) entry(id string) string {
	return fmt.Sprintf("targets[%d] (%q)", c.byID[id], id)
}
