package model

import (
	"encoding/json"
	"fmt"
)

// Lifecycle event names (docs/CONTRACTS.md, "Lifecycle events").
const (
	EventRunStarted  = "run_started"
	EventJobStarted  = "job_started"
	EventJobFinished = "job_finished"
	EventRunFinished = "run_finished"
)

// LifecycleEvent is one line of `--output jsonl`, tagged by "event" (written
// first). Exactly one of the payload shapes is set, per Event.
type LifecycleEvent struct {
	Event string
	// run_started
	RunID             string
	CreatedAt         Timestamp
	RerunOf           *string
	TargetID          *string
	TargetDescription *string
	// job_started, job_finished (RunID too)
	Job *JobRecord
	// run_finished
	Run *RunRecord
}

// RunStartedEvent builds the run_started event of r.
func RunStartedEvent(r *RunRecord) LifecycleEvent {
	return LifecycleEvent{Event: EventRunStarted, RunID: r.RunID, CreatedAt: r.CreatedAt,
		RerunOf: r.RerunOf, TargetID: r.TargetID, TargetDescription: r.TargetDescription}
}

// JobStartedEvent builds a job_started event.
func JobStartedEvent(runID string, j JobRecord) LifecycleEvent {
	return LifecycleEvent{Event: EventJobStarted, RunID: runID, Job: &j}
}

// JobFinishedEvent builds a job_finished event.
func JobFinishedEvent(runID string, j JobRecord) LifecycleEvent {
	return LifecycleEvent{Event: EventJobFinished, RunID: runID, Job: &j}
}

// RunFinishedEvent builds the run_finished event of r.
func RunFinishedEvent(r RunRecord) LifecycleEvent {
	return LifecycleEvent{Event: EventRunFinished, Run: &r}
}

type runStartedJSON struct {
	Event             string    `json:"event"`
	RunID             string    `json:"run_id"`
	CreatedAt         Timestamp `json:"created_at"`
	RerunOf           *string   `json:"rerun_of"`
	TargetID          *string   `json:"target_id"`
	TargetDescription *string   `json:"target_description"`
}

type jobEventJSON struct {
	Event string     `json:"event"`
	RunID string     `json:"run_id"`
	Job   *JobRecord `json:"job"`
}

type runFinishedJSON struct {
	Event string     `json:"event"`
	Run   *RunRecord `json:"run"`
}

// MarshalJSON writes the event with its tag first.
func (e LifecycleEvent) MarshalJSON() ([]byte, error) {
	switch e.Event {
	case EventRunStarted:
		return marshalNoEscape(runStartedJSON{e.Event, e.RunID, e.CreatedAt, e.RerunOf, e.TargetID, e.TargetDescription})
	case EventJobStarted, EventJobFinished:
		if e.Job == nil {
			return nil, fmt.Errorf("lifecycle event %q: job is nil", e.Event)
		}
		return marshalNoEscape(jobEventJSON{e.Event, e.RunID, e.Job})
	case EventRunFinished:
		if e.Run == nil {
			return nil, fmt.Errorf("lifecycle event %q: run is nil", e.Event)
		}
		return marshalNoEscape(runFinishedJSON{e.Event, e.Run})
	}
	return nil, fmt.Errorf("lifecycle event: unknown event %q", e.Event)
}

// UnmarshalJSON reads any of the four events.
func (e *LifecycleEvent) UnmarshalJSON(b []byte) error {
	var tag struct {
		Event string `json:"event"`
	}
	if err := json.Unmarshal(b, &tag); err != nil {
		return fmt.Errorf("lifecycle event: %w", err)
	}
	switch tag.Event {
	case EventRunStarted:
		if err := requireKeys(b, "run_started event", "run_id", "created_at"); err != nil {
			return err
		}
		var v runStartedJSON
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("run_started event: %w", err)
		}
		*e = LifecycleEvent{Event: v.Event, RunID: v.RunID, CreatedAt: v.CreatedAt, RerunOf: v.RerunOf,
			TargetID: v.TargetID, TargetDescription: v.TargetDescription}
	case EventJobStarted, EventJobFinished:
		if err := requireKeys(b, tag.Event+" event", "run_id", "job"); err != nil {
			return err
		}
		var v jobEventJSON
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("%s event: %w", tag.Event, err)
		}
		*e = LifecycleEvent{Event: v.Event, RunID: v.RunID, Job: v.Job}
	case EventRunFinished:
		if err := requireKeys(b, "run_finished event", "run"); err != nil {
			return err
		}
		var v runFinishedJSON
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("run_finished event: %w", err)
		}
		*e = LifecycleEvent{Event: v.Event, Run: v.Run}
	default:
		return fmt.Errorf("lifecycle event: field `event`: expected one of %s, got %q",
			quoteList([]string{EventRunStarted, EventJobStarted, EventJobFinished, EventRunFinished}), tag.Event)
	}
	return nil
}
