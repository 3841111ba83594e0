package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"jerichoci/internal/wording"
)

// RunStatus is the status of a run or a job.
type RunStatus string

// Statuses (docs/CONTRACTS.md, "Record rules").
const (
	StatusRunning RunStatus = "running"
	StatusPassed  RunStatus = "passed"
	StatusFailed  RunStatus = "failed"
	StatusSkipped RunStatus = "skipped"
)

// Valid reports whether s is a known status.
func (s RunStatus) Valid() bool {
	switch s {
	case StatusRunning, StatusPassed, StatusFailed, StatusSkipped:
		return true
	}
	return false
}

// UnmarshalJSON accepts only the four statuses.
func (s *RunStatus) UnmarshalJSON(b []byte) error {
	return decodeEnum(b, s, "running", "passed", "failed", "skipped")
}

// Placement says where an executor runs a job.
type Placement string

// Placements.
const (
	PlacementLocal     Placement = "local"
	PlacementRemoteSSH Placement = "remote_ssh"
)

// UnmarshalJSON accepts only the known placements.
func (p *Placement) UnmarshalJSON(b []byte) error {
	return decodeEnum(b, p, "local", "remote_ssh")
}

// UnmarshalJSON accepts only the known runtime kinds.
func (k *RuntimeKind) UnmarshalJSON(b []byte) error {
	return decodeEnum(b, k, "host_process", "incus", "tart")
}

// Executor kinds as recorded in JobRecord.executor.
const (
	ExecutorHostLocal     = "host_local"
	ExecutorRemoteLinuxVM = "remote_linux_vm"
	ExecutorTartLocal     = "tart_local"
)

// BackendIncus is the only remote Linux VM backend.
const BackendIncus = "incus"

// RunRecord is runs/<run_id>/run.json. Field order is the original's.
type RunRecord struct {
	RunID                                                string                `json:"run_id"`
	Status                                               RunStatus             `json:"status"`
	RerunOf                                              *string               `json:"rerun_of"`
	TargetID                                             *string               `json:"target_id"`
	TargetDescription                                    *string               `json:"target_description"`
	SourceRoot                                           string                `json:"source_root"`
	SnapshotDir                                          string                `json:"snapshot_dir"`
	GitHead                                              *string               `json:"git_head"`
	GitDirty                                             *bool                 `json:"git_dirty"`
	CreatedAt                                            Timestamp             `json:"created_at"`
	FinishedAt                                           *Timestamp            `json:"finished_at"`
	PlanPath                                             *string               `json:"plan_path"`
	PreparedOutputsPath                                  *string               `json:"prepared_outputs_path"`
	PreparedOutputConsumer                               *string               `json:"prepared_output_consumer"`
	PreparedOutputMode                                   *string               `json:"prepared_output_mode"`
	PreparedOutputInvocationMode                         *string               `json:"prepared_output_invocation_mode"`
	PreparedOutputInvocationWrapperProgram               *string               `json:"prepared_output_invocation_wrapper_program"`
	PreparedOutputLauncherTransportMode                  *string               `json:"prepared_output_launcher_transport_mode"`
	PreparedOutputLauncherTransportProgram               *string               `json:"prepared_output_launcher_transport_program"`
	PreparedOutputLauncherTransportHost                  *string               `json:"prepared_output_launcher_transport_host"`
	PreparedOutputLauncherTransportRemoteLauncherProgram *string               `json:"prepared_output_launcher_transport_remote_launcher_program"`
	PreparedOutputLauncherTransportRemoteHelperProgram   *string               `json:"prepared_output_launcher_transport_remote_helper_program"`
	PreparedOutputLauncherTransportRemoteWorkDir         *string               `json:"prepared_output_launcher_transport_remote_work_dir"`
	ChangedFiles                                         []string              `json:"changed_files"`
	Filters                                              []string              `json:"filters"`
	Message                                              *string               `json:"message"`
	PrepareTimings                                       []PrepareTimingRecord `json:"prepare_timings"`
	Jobs                                                 []JobRecord           `json:"jobs"`
}

type runRecordJSON RunRecord

// MarshalJSON writes nil slices as [] (never null).
func (r RunRecord) MarshalJSON() ([]byte, error) {
	v := runRecordJSON(r)
	v.ChangedFiles = nonNil(v.ChangedFiles)
	v.Filters = nonNil(v.Filters)
	v.PrepareTimings = nonNil(v.PrepareTimings)
	v.Jobs = nonNil(v.Jobs)
	return marshalNoEscape(v)
}

// UnmarshalJSON checks the required fields and fills missing arrays with [].
func (r *RunRecord) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "run record", "run_id", "status", "source_root", "snapshot_dir", "created_at", "jobs"); err != nil {
		return err
	}
	var v runRecordJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("run record: %w", err)
	}
	v.ChangedFiles = nonNil(v.ChangedFiles)
	v.Filters = nonNil(v.Filters)
	v.PrepareTimings = nonNil(v.PrepareTimings)
	v.Jobs = nonNil(v.Jobs)
	*r = RunRecord(v)
	return nil
}

// PrepareTimingRecord times one prepare node.
type PrepareTimingRecord struct {
	NodeID     string    `json:"node_id"`
	StartedAt  Timestamp `json:"started_at"`
	FinishedAt Timestamp `json:"finished_at"`
	DurationMS uint64    `json:"duration_ms"`
}

type prepareTimingJSON PrepareTimingRecord

// UnmarshalJSON checks the required fields.
func (p *PrepareTimingRecord) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "prepare timing", "node_id", "started_at", "finished_at", "duration_ms"); err != nil {
		return err
	}
	return json.Unmarshal(b, (*prepareTimingJSON)(p))
}

// JobRecord is one entry of RunRecord.jobs and jobs/<job_id>/status.json.
type JobRecord struct {
	ID                            string                        `json:"id"`
	Description                   string                        `json:"description"`
	Status                        RunStatus                     `json:"status"`
	Executor                      string                        `json:"executor"`
	Placement                     *Placement                    `json:"placement"`
	Runtime                       *RuntimeKind                  `json:"runtime"`
	PlanNodeID                    *string                       `json:"plan_node_id"`
	TimeoutSecs                   uint64                        `json:"timeout_secs"`
	HostLogPath                   string                        `json:"host_log_path"`
	GuestLogPath                  string                        `json:"guest_log_path"`
	StartedAt                     Timestamp                     `json:"started_at"`
	FinishedAt                    *Timestamp                    `json:"finished_at"`
	ExitCode                      *int32                        `json:"exit_code"`
	Message                       *string                       `json:"message"`
	PreExecutionPrepareDurationMS *uint64                       `json:"pre_execution_prepare_duration_ms"`
	RemoteLinuxVMExecution        *RemoteLinuxVMExecutionRecord `json:"remote_linux_vm_execution"`
}

type jobRecordJSON JobRecord

// MarshalJSON writes the record without HTML escaping.
func (j JobRecord) MarshalJSON() ([]byte, error) { return marshalNoEscape(jobRecordJSON(j)) }

// UnmarshalJSON checks the required fields.
func (j *JobRecord) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "job record", "id", "description", "status", "executor", "timeout_secs",
		"host_log_path", "guest_log_path", "started_at"); err != nil {
		return err
	}
	if err := json.Unmarshal(b, (*jobRecordJSON)(j)); err != nil {
		return fmt.Errorf("job record: %w", err)
	}
	return nil
}

// RemoteLinuxVMExecutionRecord describes how an Incus job ran.
type RemoteLinuxVMExecutionRecord struct {
	Backend    string                    `json:"backend"`
	IncusImage *RemoteLinuxVMImageRecord `json:"incus_image"`
	Phases     []PhaseRecord             `json:"phases"`
}

type executionJSON RemoteLinuxVMExecutionRecord

// MarshalJSON writes nil phases as [].
func (e RemoteLinuxVMExecutionRecord) MarshalJSON() ([]byte, error) {
	v := executionJSON(e)
	v.Phases = nonNil(v.Phases)
	return marshalNoEscape(v)
}

// UnmarshalJSON checks backend and defaults phases to [].
func (e *RemoteLinuxVMExecutionRecord) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "remote linux vm execution record", "backend"); err != nil {
		return err
	}
	var v executionJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	v.Phases = nonNil(v.Phases)
	*e = RemoteLinuxVMExecutionRecord(v)
	return nil
}

// RemoteLinuxVMImageRecord names the image an Incus job ran on. GuestRole is
// omitted when absent (the only omitted field); the legacy key "role" is
// accepted on read and always written back as "guest_role".
type RemoteLinuxVMImageRecord struct {
	GuestRole   *IncusGuestRole `json:"guest_role,omitempty"`
	Project     string          `json:"project"`
	Alias       string          `json:"alias"`
	Fingerprint *string         `json:"fingerprint"`
}

type imageRecordJSON RemoteLinuxVMImageRecord

// MarshalJSON writes the record without HTML escaping.
func (r RemoteLinuxVMImageRecord) MarshalJSON() ([]byte, error) {
	return marshalNoEscape(imageRecordJSON(r))
}

// UnmarshalJSON accepts `guest_role` or the legacy `role`, rejects both
// together (even if one is null) and rejects repeated keys.
func (r *RemoteLinuxVMImageRecord) UnmarshalJSON(b []byte) error {
	fields, err := objectFields(b, "image record")
	if err != nil {
		return err
	}
	_, hasGuestRole := fields["guest_role"]
	legacy, hasRole := fields["role"]
	if hasGuestRole && hasRole {
		return errors.New("image record: both `guest_role` and its legacy spelling `role` are present; expected one")
	}
	if err := missingKeys(fields, "image record", "project", "alias"); err != nil {
		return err
	}
	var v imageRecordJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("image record: %w", err)
	}
	if hasRole && !bytes.Equal(bytes.TrimSpace(legacy), []byte("null")) {
		var role IncusGuestRole
		if err := json.Unmarshal(legacy, &role); err != nil {
			return fmt.Errorf("image record: field `role`: %w", err)
		}
		v.GuestRole = &role
	}
	*r = RemoteLinuxVMImageRecord(v)
	return nil
}

// Phase names an execution phase of an Incus job, in order.
type Phase string

// The six phases (docs/CONTRACTS.md, "Phases and the image record").
const (
	PhasePrepareDirectories     Phase = "prepare_directories"
	PhaseStageWorkspaceSnapshot Phase = "stage_workspace_snapshot"
	PhasePrepareRuntime         Phase = "prepare_runtime"
	PhaseLaunchGuest            Phase = "launch_guest"
	PhaseWaitForCompletion      Phase = "wait_for_completion"
	PhaseCollectArtifacts       Phase = "collect_artifacts"
)

// UnmarshalJSON accepts only the six phases.
func (p *Phase) UnmarshalJSON(b []byte) error {
	return decodeEnum(b, p, "prepare_directories", "stage_workspace_snapshot", "prepare_runtime",
		"launch_guest", "wait_for_completion", "collect_artifacts")
}

// PhaseRecord times one phase.
type PhaseRecord struct {
	Phase      Phase     `json:"phase"`
	StartedAt  Timestamp `json:"started_at"`
	FinishedAt Timestamp `json:"finished_at"`
	DurationMS uint64    `json:"duration_ms"`
}

type phaseJSON PhaseRecord

// UnmarshalJSON checks the required fields.
func (p *PhaseRecord) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "phase record", "phase", "started_at", "finished_at", "duration_ms"); err != nil {
		return err
	}
	return json.Unmarshal(b, (*phaseJSON)(p))
}

// EncodeFile renders v as the original's files are written: 2-space pretty
// JSON, no HTML escaping, and a trailing newline.
func EncodeFile(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EncodeCompact renders v on one line (events), with a trailing newline.
func EncodeCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func marshalNoEscape(v any) ([]byte, error) {
	b, err := EncodeCompact(v)
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(b, "\n"), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// decodeEnum decodes a JSON string into *p when it is one of allowed.
func decodeEnum[T ~string](b []byte, p *T, allowed ...string) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected one of %s, got %s", quoteList(allowed), b)
	}
	for _, a := range allowed {
		if s == a {
			*p = T(s)
			return nil
		}
	}
	return fmt.Errorf("expected one of %s, got %q", quoteList(allowed), s)
}

func quoteList(xs []string) string {
	var buf bytes.Buffer
	for i, x := range xs {
		if i > 0 {
			buf.WriteString(", ")
		}
		fmt.Fprintf(&buf, "%q", x)
	}
	return buf.String()
}

// objectFields returns the members of the JSON object b, rejecting repeated
// keys (encoding/json silently keeps the last one).
func objectFields(b []byte, what string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s: expected a JSON object, got %s", what, describeJSON(b))
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", what, wording.Field(key), err)
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("%s: %s", what, wording.Repeated(key))
		}
		fields[key] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: unexpected data after the object", what)
	}
	return fields, nil
}

// requireKeys fails, naming every missing key, when b lacks any of keys.
func requireKeys(b []byte, what string, keys ...string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: expected a JSON object, got %s", what, describeJSON(b))
	}
	return missingKeys(m, what, keys...)
}

// missingKeys names every key of keys that fields lacks.
func missingKeys(fields map[string]json.RawMessage, what string, keys ...string) error {
	var errs []error
	for _, k := range keys {
		if _, ok := fields[k]; !ok {
			errs = append(errs, fmt.Errorf("%s: missing required field `%s`", what, k))
		}
	}
	return errors.Join(errs...)
}

// describeJSON names the kind of a JSON value for error messages
// (internal/wording).
func describeJSON(b []byte) string { return wording.Described(b) }
