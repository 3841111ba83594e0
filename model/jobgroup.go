package model

import (
	"strconv"

	"jerichoci/internal/names"
)

// JobGroup is the optional `group` of a job spec: the jobs enqueued
// together (a push) share it, so a status page can show them as one
// (docs/PROTOCOL.md, "Job spec").
type JobGroup struct {
	// ID names the group; every job of the group carries the same.
	ID string `json:"id"`
	// Lanes are the lane titles (or target ids) of every job of the
	// group, in order, so a page knows the lanes that have not started.
	Lanes []string `json:"lanes,omitempty"`
	// JobIDs, when given, are the job ids the lanes were published with,
	// one per lane in the same order (the spec's own job_id at its lane's
	// place), so a page can ask the daemon whether a lane that has not
	// started was ever queued. Older specs have none.
	JobIDs []string `json:"job_ids,omitempty"`
}

// maxGroupLanes bounds a group's lanes.
const maxGroupLanes = 256

const groupIDExp = "a group id of letters, digits, '.', '_' or '-'"

// parseGroup decodes a spec's `group` object strictly.
func parseGroup(o *StrictObject) *JobGroup {
	var g JobGroup
	if id, ok := o.Str("id", true, groupIDExp); ok {
		if !names.Valid(id) {
			o.Fail("id", quoteJSON(id), groupIDExp)
		}
		g.ID = id
	}
	laneExp := "an array of at most " + strconv.Itoa(maxGroupLanes) + " lane titles or target ids"
	lanes, lanesOK := o.Strings("lanes", false, laneExp)
	lanesOK = lanesOK || !o.Has("lanes") // no lanes: job_ids must be empty too
	if lanesOK && o.Has("lanes") {
		if len(lanes) > maxGroupLanes {
			raw, _ := o.Raw("lanes", false, laneExp)
			o.Fail("lanes", raw, laneExp)
		}
		for i, l := range lanes {
			if !names.Valid(l) {
				o.Fail("lanes["+strconv.Itoa(i)+"]", quoteJSON(l), "a lane title or target id of letters, digits, '.', '_' or '-'")
			}
		}
		g.Lanes = lanes
	}
	idsExp := "an array of job ids (lowercase UUIDs), one per lane of `lanes`, all different"
	if ids, ok := o.Strings("job_ids", false, idsExp); ok {
		seen := map[string]bool{}
		for i, id := range ids {
			field := "job_ids[" + strconv.Itoa(i) + "]"
			if _, err := ParseJobID(id); err != nil {
				o.Fail(field, quoteJSON(id), "a job id: a lowercase UUID of 36 characters")
			} else if seen[id] {
				o.Fail(field, quoteJSON(id), "a job id not named before in `job_ids`")
			}
			seen[id] = true
		}
		if lanesOK && len(ids) != len(g.Lanes) {
			raw, _ := o.Raw("job_ids", false, idsExp)
			o.Fail("job_ids", raw, "one job id per lane of `lanes` ("+strconv.Itoa(len(g.Lanes))+")")
		}
		g.JobIDs = ids
	}
	specDone(o)
	return &g
}

// checkGroupJob reports a group whose job_ids do not hold the spec's own
// job id at a place whose lane is the spec's lane (or target): the group
// would name this job for another lane.
func checkGroupJob(o *StrictObject, g *JobGroup, jobID, name string) {
	if g == nil || len(g.JobIDs) == 0 || len(g.JobIDs) != len(g.Lanes) {
		return
	}
	for i, id := range g.JobIDs {
		if id == jobID && g.Lanes[i] == name {
			return
		}
	}
	o.Failf("group.job_ids", "expected the spec's own job_id %q at the place of its lane %q in `lanes`", jobID, name)
}
