package model

import (
	"encoding/json"
	"fmt"
)

// TerminalStatus is the guest's verdict in artifacts/result.json.
type TerminalStatus string

// Terminal statuses. The legacy "passed" is rejected.
const (
	TerminalCompleted TerminalStatus = "completed"
	TerminalFailed    TerminalStatus = "failed"
)

// UnmarshalJSON accepts only completed and failed.
func (s *TerminalStatus) UnmarshalJSON(b []byte) error {
	return decodeEnum(b, s, "completed", "failed")
}

// RunStatus maps the verdict to a job status.
func (s TerminalStatus) RunStatus() RunStatus {
	if s == TerminalCompleted {
		return StatusPassed
	}
	return StatusFailed
}

// TerminalResult is artifacts/result.json, written by the guest. It is
// authoritative for the job's status, exit code and message.
type TerminalResult struct {
	SchemaVersion int             `json:"schema_version"`
	Status        TerminalStatus  `json:"status"`
	ExitCode      *int32          `json:"exit_code,omitempty"`
	FinishedAt    Timestamp       `json:"finished_at"`
	Message       string          `json:"message"`
	Details       json.RawMessage `json:"details,omitempty"`
}

type terminalResultJSON TerminalResult

// MarshalJSON writes the result without HTML escaping.
func (r TerminalResult) MarshalJSON() ([]byte, error) { return marshalNoEscape(terminalResultJSON(r)) }

// UnmarshalJSON checks required fields and the schema version.
func (r *TerminalResult) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "terminal result", "schema_version", "status", "finished_at", "message"); err != nil {
		return err
	}
	var v terminalResultJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("terminal result: %w", err)
	}
	if v.SchemaVersion != 1 {
		return fmt.Errorf("terminal result: field `schema_version`: expected 1, got %d", v.SchemaVersion)
	}
	*r = TerminalResult(v)
	return nil
}

// GuestState is the vocabulary of the guest lifecycle (status.json state,
// events.jsonl kind).
type GuestState string

// Guest states.
const (
	GuestRequested    GuestState = "requested"
	GuestProvisioning GuestState = "provisioning"
	GuestBooted       GuestState = "booted"
	GuestUnreachable  GuestState = "unreachable"
	GuestStopped      GuestState = "stopped"
	GuestDestroyed    GuestState = "destroyed"
	GuestStarting     GuestState = "starting"
	GuestReady        GuestState = "ready"
	GuestFailed       GuestState = "failed"
	GuestCompleted    GuestState = "completed"
)

// UnmarshalJSON accepts only the guest lifecycle vocabulary.
func (s *GuestState) UnmarshalJSON(b []byte) error {
	return decodeEnum(b, s, "requested", "provisioning", "booted", "unreachable", "stopped",
		"destroyed", "starting", "ready", "failed", "completed")
}

// GuestStatus is the guest's artifacts/status.json.
type GuestStatus struct {
	SchemaVersion int             `json:"schema_version"`
	State         GuestState      `json:"state"`
	UpdatedAt     Timestamp       `json:"updated_at"`
	Message       string          `json:"message"`
	BootID        *string         `json:"boot_id,omitempty"`
	Details       json.RawMessage `json:"details,omitempty"`
}

// GuestEvent is one line of the guest's artifacts/events.jsonl.
type GuestEvent struct {
	SchemaVersion int             `json:"schema_version"`
	Seq           uint64          `json:"seq"`
	Timestamp     Timestamp       `json:"timestamp"`
	Kind          GuestState      `json:"kind"`
	Message       string          `json:"message"`
	BootID        *string         `json:"boot_id,omitempty"`
	Details       json.RawMessage `json:"details,omitempty"`
}
