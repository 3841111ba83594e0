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
	if lanes, ok := o.Strings("lanes", false, laneExp); ok {
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
	specDone(o)
	return &g
}
