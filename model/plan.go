package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// The staged prepared-output pipeline's records (docs/CONTRACTS.md, "Staged
// outputs"): runs/<run_id>/plan.json, runs/<run_id>/prepared-outputs.json
// and the payload manifest a staged output carries. Field order and spelling
// are the original's; optional fields are written as null, as serde does.

// PlanSchemaVersion is plan.json's and prepared-outputs.json's schema.
const PlanSchemaVersion = 1

// Plan node kinds, executors and prepare/execute types.
const (
	PlanNodePrepare = "prepare"
	PlanNodeExecute = "execute"

	PrepareNixBuild              = "nix_build"
	PrepareRemoteLinuxVMBackend  = "remote_linux_vm_backend"
	ExecuteVMCommand             = "vm_command"
	ExecuteHostCommand           = "host_command"
	PlanScopePostSetupAndSnap    = "post_host_setup_and_snapshot"
	ResidencyLocalAuthoritative  = "local_authoritative"
	ResidencyRemoteStagedLinux   = "remote_authoritative_staged_linux"
	HandoffNixStorePathV1        = "nix_store_path_v1"
	ExposureHostSymlinkMount     = "host_symlink_mount"
	ExposureReadOnly             = "read_only"
	ConsumerHostLocalSymlinkV1   = "host_local_symlink_mounts_v1"
	PayloadManifestRelativePath  = "share/pikaci/payload-manifest.json"
	PlanPreconditionHostSetup    = "host_setup_complete"
	PlanPreconditionSnapshotMade = "workspace_snapshot_created"
)

// RunPlanRecord is plan.json.
type RunPlanRecord struct {
	SchemaVersion     int              `json:"schema_version"`
	RunID             string           `json:"run_id"`
	TargetID          *string          `json:"target_id"`
	TargetDescription *string          `json:"target_description"`
	CreatedAt         Timestamp        `json:"created_at"`
	Scope             string           `json:"scope"`
	Preconditions     []string         `json:"preconditions"`
	Nodes             []PlanNodeRecord `json:"nodes"`
}

type runPlanJSON RunPlanRecord

// MarshalJSON writes nil slices as [].
func (p RunPlanRecord) MarshalJSON() ([]byte, error) {
	v := runPlanJSON(p)
	v.Preconditions = nonNil(v.Preconditions)
	v.Nodes = nonNil(v.Nodes)
	return marshalNoEscape(v)
}

// PlanNodeRecord is one node of plan.json: Kind is "prepare" (Prepare set)
// or "execute" (Execute set).
type PlanNodeRecord struct {
	Kind        string       `json:"kind"`
	ID          string       `json:"id"`
	Description string       `json:"description"`
	Executor    string       `json:"executor"` // host_local, remote_linux_vm, tart_local
	Placement   *Placement   `json:"placement"`
	Runtime     *RuntimeKind `json:"runtime"`
	DependsOn   []string     `json:"depends_on"`
	Prepare     *PrepareNode `json:"prepare,omitempty"`
	Execute     *ExecuteNode `json:"execute,omitempty"`
}

type planNodeJSON PlanNodeRecord

// MarshalJSON writes depends_on as [] when empty.
func (n PlanNodeRecord) MarshalJSON() ([]byte, error) {
	v := planNodeJSON(n)
	v.DependsOn = nonNil(v.DependsOn)
	return marshalNoEscape(v)
}

// PrepareNode is a prepare node's action: Type nix_build (the other fields)
// or remote_linux_vm_backend (Backend).
type PrepareNode struct {
	Type        string
	Installable string
	OutputName  string
	Residency   string
	Handoff     *PreparedOutputHandoff
	Backend     string
}

// MarshalJSON writes the fields of the node's type only, as the original's
// tagged enum does.
func (p PrepareNode) MarshalJSON() ([]byte, error) {
	if p.Type == PrepareRemoteLinuxVMBackend {
		return marshalNoEscape(struct {
			Type    string `json:"type"`
			Backend string `json:"backend"`
		}{p.Type, p.Backend})
	}
	res := p.Residency
	if res == "" {
		res = ResidencyLocalAuthoritative
	}
	return marshalNoEscape(struct {
		Type        string                 `json:"type"`
		Installable string                 `json:"installable"`
		OutputName  string                 `json:"output_name"`
		Residency   string                 `json:"residency"`
		Handoff     *PreparedOutputHandoff `json:"handoff"`
	}{p.Type, p.Installable, p.OutputName, res, p.Handoff})
}

// ExecuteNode is an execute node's action: vm_command or host_command.
type ExecuteNode struct {
	Type              string
	Command           string
	RunAsRoot         bool
	TimeoutSecs       uint64
	WritableWorkspace bool
}

// MarshalJSON writes run_as_root only for vm_command, as the original does.
func (e ExecuteNode) MarshalJSON() ([]byte, error) {
	if e.Type == ExecuteHostCommand {
		return marshalNoEscape(struct {
			Type              string `json:"type"`
			Command           string `json:"command"`
			TimeoutSecs       uint64 `json:"timeout_secs"`
			WritableWorkspace bool   `json:"writable_workspace"`
		}{e.Type, e.Command, e.TimeoutSecs, e.WritableWorkspace})
	}
	return marshalNoEscape(struct {
		Type              string `json:"type"`
		Command           string `json:"command"`
		RunAsRoot         bool   `json:"run_as_root"`
		TimeoutSecs       uint64 `json:"timeout_secs"`
		WritableWorkspace bool   `json:"writable_workspace"`
	}{e.Type, e.Command, e.RunAsRoot, e.TimeoutSecs, e.WritableWorkspace})
}

// PreparedOutputExposure is where a realized output is shown.
type PreparedOutputExposure struct {
	Kind   string `json:"kind"`   // host_symlink_mount
	Path   string `json:"path"`   // the job's staged-linux-rust/<role>
	Access string `json:"access"` // read_only
}

// PreparedOutputHandoff says how an output is handed to its consumers.
type PreparedOutputHandoff struct {
	Protocol  string                   `json:"protocol"`
	Exposures []PreparedOutputExposure `json:"exposures"`
}

type handoffJSON PreparedOutputHandoff

// MarshalJSON writes exposures as [] when empty.
func (h PreparedOutputHandoff) MarshalJSON() ([]byte, error) {
	v := handoffJSON(h)
	v.Exposures = nonNil(v.Exposures)
	return marshalNoEscape(v)
}

// PreparedOutputsRecord is prepared-outputs.json.
type PreparedOutputsRecord struct {
	SchemaVersion int                            `json:"schema_version"`
	Outputs       []RealizedPreparedOutputRecord `json:"outputs"`
}

type preparedOutputsJSON PreparedOutputsRecord

// MarshalJSON writes outputs as [] when empty.
func (p PreparedOutputsRecord) MarshalJSON() ([]byte, error) {
	v := preparedOutputsJSON(p)
	v.Outputs = nonNil(v.Outputs)
	return marshalNoEscape(v)
}

// UnmarshalJSON checks schema_version and defaults outputs to [].
func (p *PreparedOutputsRecord) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "prepared outputs", "schema_version"); err != nil {
		return err
	}
	var v preparedOutputsJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("prepared outputs: %w", err)
	}
	v.Outputs = nonNil(v.Outputs)
	*p = PreparedOutputsRecord(v)
	return nil
}

// Upsert replaces the output with rec's node id, else appends rec.
func (p *PreparedOutputsRecord) Upsert(rec RealizedPreparedOutputRecord) {
	for i := range p.Outputs {
		if p.Outputs[i].NodeID == rec.NodeID {
			p.Outputs[i] = rec
			return
		}
	}
	p.Outputs = append(p.Outputs, rec)
}

// RealizedPreparedOutputRecord is one realized output.
type RealizedPreparedOutputRecord struct {
	NodeID                       string                   `json:"node_id"`
	Installable                  string                   `json:"installable"`
	OutputName                   string                   `json:"output_name"`
	Protocol                     string                   `json:"protocol"`
	Residency                    string                   `json:"residency"`
	Consumer                     string                   `json:"consumer"`
	RealizedPath                 string                   `json:"realized_path"`
	ConsumerRequestPath          *string                  `json:"consumer_request_path"`
	ConsumerResultPath           *string                  `json:"consumer_result_path"`
	ConsumerLaunchRequestPath    *string                  `json:"consumer_launch_request_path"`
	ConsumerTransportRequestPath *string                  `json:"consumer_transport_request_path"`
	Exposures                    []PreparedOutputExposure `json:"exposures"`
	RequestedExposures           []PreparedOutputExposure `json:"requested_exposures"`
	Payload                      *PayloadManifest         `json:"payload"`
}

type realizedJSON RealizedPreparedOutputRecord

// MarshalJSON writes empty arrays as [].
func (r RealizedPreparedOutputRecord) MarshalJSON() ([]byte, error) {
	v := realizedJSON(r)
	v.Exposures = nonNil(v.Exposures)
	v.RequestedExposures = nonNil(v.RequestedExposures)
	return marshalNoEscape(v)
}

// PayloadManifest is share/pikaci/payload-manifest.json of a staged output.
type PayloadManifest struct {
	SchemaVersion int            `json:"schema_version"`
	Kind          string         `json:"kind"`
	Entrypoints   []PayloadPath  `json:"entrypoints"`
	AssetRoots    []PayloadPath  `json:"asset_roots"`
	Mounts        []PayloadMount `json:"mounts"`
}

type payloadManifestJSON PayloadManifest

// MarshalJSON writes empty arrays as [].
func (m PayloadManifest) MarshalJSON() ([]byte, error) {
	v := payloadManifestJSON(m)
	v.Entrypoints = nonNil(v.Entrypoints)
	v.AssetRoots = nonNil(v.AssetRoots)
	v.Mounts = nonNil(v.Mounts)
	return marshalNoEscape(v)
}

// UnmarshalJSON requires schema_version and kind, and defaults the arrays.
func (m *PayloadManifest) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "payload manifest", "schema_version", "kind"); err != nil {
		return err
	}
	var v payloadManifestJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("payload manifest: %w", err)
	}
	v.Entrypoints = nonNil(v.Entrypoints)
	v.AssetRoots = nonNil(v.AssetRoots)
	v.Mounts = nonNil(v.Mounts)
	*m = PayloadManifest(v)
	return nil
}

// PayloadPath names a path inside a payload.
type PayloadPath struct {
	Name         string `json:"name"`
	RelativePath string `json:"relative_path"`
}

// PayloadMount is a directory of a payload shown in the guest.
type PayloadMount struct {
	Name         string `json:"name"`
	RelativePath string `json:"relative_path"`
	GuestPath    string `json:"guest_path"`
	ReadOnly     bool   `json:"read_only"`
}

// SnapshotMetadata is snapshot/pikaci-snapshot.json.
type SnapshotMetadata struct {
	SourceRoot  string    `json:"source_root"`
	SnapshotDir string    `json:"snapshot_dir"`
	GitHead     *string   `json:"git_head"`
	GitDirty    *bool     `json:"git_dirty"`
	CreatedAt   Timestamp `json:"created_at"`
	ContentHash *string   `json:"content_hash"`
}

// SnapshotMetadataFile is the name of SnapshotMetadata inside a snapshot.
const SnapshotMetadataFile = "pikaci-snapshot.json"

// skippedAnywhere are left out of every snapshot at any depth, skippedNested
// below the root only (docs/CONTRACTS.md, "Snapshots"): the one list.
var (
	skippedAnywhere = map[string]bool{".git": true, ".pikaci": true, ".direnv": true, "target": true}
	skippedNested   = map[string]bool{"node_modules": true, ".gradle": true, "DerivedData": true, "build": true}
)

// SnapshotSkips reports whether every snapshot leaves out an entry called
// name, a directory with all below it; root says the entry is directly in
// the tree's root (a root build/ is kept, a nested one is not). A snapshot
// profile may leave out more at the root (run.SnapshotProfile); a copy of
// a snapshot (a host-local workspace) leaves out this much.
func SnapshotSkips(name string, root bool) bool {
	return skippedAnywhere[name] || !root && skippedNested[name]
}

// SnapshotSkipsAnywhere reports whether every snapshot leaves out an entry
// called name wherever it is: what a source tarball leaves out too.
func SnapshotSkipsAnywhere(name string) bool { return skippedAnywhere[name] }

// JobLogMetadata and RunLogsMetadata are `logs --metadata-json`.
type JobLogMetadata struct {
	ID             string `json:"id"`
	HostLogPath    string `json:"host_log_path"`
	GuestLogPath   string `json:"guest_log_path"`
	HostLogExists  bool   `json:"host_log_exists"`
	GuestLogExists bool   `json:"guest_log_exists"`
}

// RunLogsMetadata lists the logs of a run's jobs.
type RunLogsMetadata struct {
	RunID  string           `json:"run_id"`
	Status RunStatus        `json:"status"`
	Jobs   []JobLogMetadata `json:"jobs"`
}

// PayloadDeviceName is the Incus disk device of a payload mount
// (docs/CONTRACTS.md, "Instance and device names"):
// pk-<sanitize(kind)>-<sanitize(name)> when that fits in 20 characters, else
// pk-<first 8 of sanitize(kind)>-<first 8 hex of its sha256>.
func PayloadDeviceName(kind, mount string) string {
	prefix := sanitize(kind)
	candidate := "pk-" + prefix + "-" + sanitize(mount)
	if len(candidate) <= 20 {
		return candidate
	}
	sum := sha256.Sum256([]byte(candidate))
	if len(prefix) > 8 {
		prefix = prefix[:8]
	}
	return "pk-" + prefix + "-" + hex.EncodeToString(sum[:4])
}

// ValidatePayloadMount checks a manifest mount of the payload at root as the
// original does: a name, a relative_path inside the payload, an absolute
// guest_path without "..".
func ValidatePayloadMount(root string, m PayloadMount) error {
	if strings.TrimSpace(m.Name) == "" {
		return fmt.Errorf("invalid payload mount for %s: empty mount name", root)
	}
	if path.IsAbs(m.RelativePath) || hasDotDot(m.RelativePath) {
		return fmt.Errorf("invalid payload mount `%s` for %s: relative_path must stay within the payload root", m.Name, root)
	}
	if !path.IsAbs(m.GuestPath) || hasDotDot(m.GuestPath) {
		return fmt.Errorf("invalid payload mount `%s` for %s: guest_path must be an absolute normalized path", m.Name, root)
	}
	return nil
}

// PayloadMountSource is the host directory of a payload mount.
func PayloadMountSource(root string, m PayloadMount) string {
	if m.RelativePath == "" || m.RelativePath == "." {
		return root
	}
	return path.Join(root, m.RelativePath)
}

func hasDotDot(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}
