// Package lanes maps the CI page's lanes (titles such as check-pika-rust) to
// catalog targets and selects the branch lanes a change needs, as the
// original's forge lane selection does (docs/CONTRACTS.md, "The original's
// catalog").
//
// A lane is a target with a trigger. Its paths are its catalog file's lane
// definition paths followed by its filters, matched as real globs (see
// targets.Glob). pika-lanes.json in this directory is a verbatim copy of
// the original's list of lanes; tests check the built-in catalog against it.
package lanes

import (
	"fmt"
	"slices"

	"jerichoci/model"
	"jerichoci/targets"
)

// Nightly lanes run once a day at this time (UTC).
const (
	NightlyHourUTC   = 8
	NightlyMinuteUTC = 0
)

// Lane is one lane of the CI page.
type Lane struct {
	Title            string          `json:"lane"`
	TargetID         string          `json:"target_id"`
	Description      string          `json:"description,omitempty"`
	Trigger          targets.Trigger `json:"trigger"`
	ConcurrencyGroup string          `json:"concurrency_group,omitempty"` // "" when none
	Runtime          string          `json:"runtime"`                     // as pika-lanes.json spells it
	PathFilters      []string        `json:"path_filters"`                // the target's filters; none for nightly lanes
	Paths            []string        `json:"paths"`                       // what selection matches: definition paths + filters
	Jobs             int             `json:"jobs"`
	// Command is the original forge's command for the lane:
	// nix run .#pikaci -- run <target id>.
	Command []string `json:"command"`

	globs []*targets.Glob
}

// Matches reports whether a changed path matches one of the lane's paths.
func (l Lane) Matches(path string) bool {
	for _, g := range l.globs {
		if g.Match(path) {
			return true
		}
	}
	return false
}

// Set is the lanes of one catalog: branch lanes then nightly lanes, each in
// catalog order.
type Set struct {
	lanes []Lane
}

// Builtin returns the lanes of the built-in catalog.
func Builtin() *Set { return FromCatalog(targets.Builtin()) }

// FromCatalog projects every target with a trigger to its lane.
func FromCatalog(c *targets.Catalog) *Set {
	var branch, nightly []Lane
	for _, t := range c.Targets() {
		switch t.Trigger {
		case targets.TriggerBranch:
			branch = append(branch, project(t))
		case targets.TriggerNightly:
			nightly = append(nightly, project(t))
		}
	}
	return &Set{lanes: append(branch, nightly...)}
}

func project(t targets.Target) Lane {
	l := Lane{
		Title:            t.Lane,
		TargetID:         t.ID,
		Description:      t.Description,
		Trigger:          t.Trigger,
		ConcurrencyGroup: t.ConcurrencyGroup,
		Runtime:          runtimeLabel(t),
		PathFilters:      []string{},
		Paths:            []string{},
		Jobs:             len(t.Jobs),
		Command:          []string{"nix", "run", ".#pikaci", "--", "run", t.ID},
	}
	// Nightly lanes have no paths: they are never selected from changes.
	if t.Trigger == targets.TriggerBranch {
		l.PathFilters = slices.Clone(t.Filters)
		l.Paths = append(slices.Clone(t.LaneDefinitionPaths), t.Filters...)
	}
	for _, p := range l.Paths {
		g, err := targets.CompileGlob(p)
		if err != nil {
			// Catalog parsing compiled every filter and definition path.
			panic(fmt.Sprintf("lanes: target %q: %v", t.ID, err))
		}
		l.globs = append(l.globs, g)
	}
	return l
}

// runtimeLabel describes the lane's runtime the way pika-lanes.json does:
// "incus (staged, guest role pikaci-runner)" or "host_process".
func runtimeLabel(t targets.Target) string {
	if len(t.Jobs) == 0 {
		return ""
	}
	rt := t.Jobs[0].Runtime
	if rt.Kind != model.RuntimeIncus || rt.Incus == nil {
		return string(rt.Kind)
	}
	staged := ""
	if t.AllStaged() {
		staged = "staged, "
	}
	return fmt.Sprintf("incus (%sguest role %s)", staged, rt.Incus.GuestRole)
}

// All returns every lane: branch lanes, then nightly lanes.
func (s *Set) All() []Lane { return slices.Clone(s.lanes) }

// Branch returns the branch lanes in catalog order.
func (s *Set) Branch() []Lane { return s.filter(targets.TriggerBranch) }

// Nightly returns the nightly lanes in catalog order.
func (s *Set) Nightly() []Lane { return s.filter(targets.TriggerNightly) }

func (s *Set) filter(tr targets.Trigger) []Lane {
	var out []Lane
	for _, l := range s.lanes {
		if l.Trigger == tr {
			out = append(out, l)
		}
	}
	return out
}

// Lookup returns the lane with this title.
func (s *Set) Lookup(title string) (Lane, bool) {
	for _, l := range s.lanes {
		if l.Title == title {
			return l, true
		}
	}
	return Lane{}, false
}

// Select returns the branch lanes a change needs, in catalog order: every
// branch lane when changed is empty; otherwise each branch lane with no
// paths or with a path matching some changed file. Nightly lanes are never
// selected.
func (s *Set) Select(changed []string) []Lane {
	branch := s.Branch()
	if len(changed) == 0 {
		return branch
	}
	var out []Lane
	for _, l := range branch {
		if len(l.Paths) == 0 || slices.ContainsFunc(changed, l.Matches) {
			out = append(out, l)
		}
	}
	return out
}
