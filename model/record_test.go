package model

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/fixtures")

const fixtures = "../testdata/fixtures"

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 11, 25, 10, 15, 0, 412873915, time.UTC)

func at(ms int) Timestamp { return At(t0.Add(time.Duration(ms) * time.Millisecond)) }

func phases(start int, durs ...int) []PhaseRecord {
	names := []Phase{PhasePrepareDirectories, PhaseStageWorkspaceSnapshot, PhasePrepareRuntime,
		PhaseLaunchGuest, PhaseWaitForCompletion, PhaseCollectArtifacts}
	var out []PhaseRecord
	for i, d := range durs {
		out = append(out, PhaseRecord{Phase: names[i], StartedAt: at(start), FinishedAt: at(start + d), DurationMS: uint64(d)})
		start += d
	}
	return out
}

func incusJob(runDir, id, desc string, status RunStatus) JobRecord {
	return JobRecord{
		ID: id, Description: desc, Status: status, Executor: ExecutorRemoteLinuxVM,
		Placement: ptr(PlacementRemoteSSH), Runtime: ptr(RuntimeIncus), PlanNodeID: ptr("execute-" + id),
		TimeoutSecs: 120, HostLogPath: runDir + "/jobs/" + id + "/host.log",
		GuestLogPath: runDir + "/jobs/" + id + "/artifacts/guest.log", StartedAt: at(118),
	}
}

func baseRun(runID string, status RunStatus) RunRecord {
	return RunRecord{
		RunID: runID, Status: status, TargetID: ptr("demo-failfast"), TargetDescription: ptr("Demo <fail-fast> & skip"),
		SourceRoot: "/srv/ci/src", SnapshotDir: "/srv/ci/runs/" + runID + "/snapshot",
		GitHead: ptr("4eef499fd13da5aec04714b080cc05fdcf655bbc"), GitDirty: ptr(true), CreatedAt: At(t0),
	}
}

func goldenRecords() map[string]any {
	const runID = "20261125T101500Z-3f9c2a1b"
	runDir := "/srv/ci/runs/" + runID

	passed := baseRun(runID, StatusPassed)
	passed.TargetID, passed.TargetDescription, passed.GitDirty = ptr("demo-pass"), ptr("Demo lane that passes"), nil
	pj := incusJob(runDir, "demo-echo", "Echo inside a local Incus guest", StatusPassed)
	pj.FinishedAt, pj.ExitCode, pj.Message = ptr(at(2567)), ptr(int32(0)), ptr("test passed")
	pj.RemoteLinuxVMExecution = &RemoteLinuxVMExecutionRecord{Backend: BackendIncus,
		IncusImage: &RemoteLinuxVMImageRecord{GuestRole: ptr(RolePikaciRunner), Project: "pika-managed-agents",
			Alias: "pikaci/dev", Fingerprint: ptr("5fe8825bdf00595827f224ca2d6a28c371bb3a7501b52cfff510711a769b80e4")},
		Phases: phases(119, 3, 120, 260, 35, 1300, 110)}
	passed.Jobs = []JobRecord{pj}
	passed.FinishedAt = ptr(at(2570))

	failed := baseRun(runID, StatusFailed)
	failed.ChangedFiles = []string{"crates/pikaci/src/targets.rs"}
	failed.Filters = []string{"crates/pikaci/**", "justfile"}
	failed.PrepareTimings = []PrepareTimingRecord{{NodeID: "prepare-demo-fail-runner", StartedAt: at(100), FinishedAt: at(117), DurationMS: 17}}
	fj := incusJob(runDir, "demo-fail", "Exit 3 inside the guest", StatusFailed)
	fj.FinishedAt, fj.ExitCode, fj.Message = ptr(at(1900)), ptr(int32(3)), ptr("test command exited with 3")
	fj.PreExecutionPrepareDurationMS = ptr(uint64(17))
	fj.RemoteLinuxVMExecution = &RemoteLinuxVMExecutionRecord{Backend: BackendIncus,
		IncusImage: &RemoteLinuxVMImageRecord{Project: "pika-managed-agents", Alias: "custom/pikaci", Fingerprint: ptr("abc123")},
		Phases:     phases(119, 2, 50, 200, 30, 1200, 90)}
	sj := incusJob(runDir, "demo-after", "Never runs", StatusSkipped)
	sj.StartedAt, sj.FinishedAt, sj.Message = at(1901), ptr(at(1901)), ptr("not run because an earlier execute node failed")
	failed.Jobs = []JobRecord{fj, sj}
	failed.FinishedAt = ptr(at(1905))

	early := baseRun(runID, StatusFailed)
	early.SnapshotDir, early.GitHead, early.GitDirty = "", nil, nil
	early.FinishedAt = ptr(at(3))
	early.Message = ptr("snapshot source: open /srv/ci/src: no such file or directory")

	timedOut := incusJob(runDir, "demo-sleep", "Sleeps past its timeout", StatusFailed)
	timedOut.FinishedAt, timedOut.Message = ptr(at(121000)), ptr("timed out after 120s")
	timedOut.RemoteLinuxVMExecution = &RemoteLinuxVMExecutionRecord{Backend: BackendIncus, Phases: phases(119, 3, 20)}

	events := []LifecycleEvent{RunStartedEvent(&passed), JobStartedEvent(runID, pj), JobFinishedEvent(runID, pj), RunFinishedEvent(passed)}
	events[1].Job.Status, events[1].Job.FinishedAt, events[1].Job.ExitCode, events[1].Job.Message = StatusRunning, nil, nil, nil
	events[1].Job.RemoteLinuxVMExecution = nil

	return map[string]any{
		"run-passed.golden.json":         passed,
		"run-failed-skipped.golden.json": failed,
		"run-early-failure.golden.json":  early,
		"job-timed-out.golden.json":      timedOut,
		"events.golden.jsonl":            events,
		"result.golden.json": TerminalResult{SchemaVersion: 1, Status: TerminalCompleted, ExitCode: ptr(int32(0)),
			FinishedAt: At(time.Date(2026, 3, 19, 1, 9, 40, 0, time.UTC)), Message: "test passed"},
	}
}

func encodeGolden(t *testing.T, v any) []byte {
	t.Helper()
	if evs, ok := v.([]LifecycleEvent); ok {
		var buf bytes.Buffer
		for _, e := range evs {
			b, err := EncodeCompact(e)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(b)
		}
		return buf.Bytes()
	}
	b, err := EncodeFile(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenRecords checks each record type against its golden file, byte for
// byte, and that decoding the file and encoding it again gives the same bytes.
func TestGoldenRecords(t *testing.T) {
	for name, v := range goldenRecords() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(fixtures, "records", name)
			got := encodeGolden(t, v)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding differs from %s (run with -update after checking):\n got: %s\nwant: %s", path, got, want)
			}
			// Round trip: decode the golden bytes into the same type and encode again.
			var back any
			switch v.(type) {
			case RunRecord:
				var r RunRecord
				err, back = json.Unmarshal(want, &r), r
			case JobRecord:
				var r JobRecord
				err, back = json.Unmarshal(want, &r), r
			case TerminalResult:
				var r TerminalResult
				err, back = json.Unmarshal(want, &r), r
			case []LifecycleEvent:
				var evs []LifecycleEvent
				for _, line := range bytes.Split(bytes.TrimSpace(want), []byte("\n")) {
					var e LifecycleEvent
					if err = json.Unmarshal(line, &e); err != nil {
						break
					}
					evs = append(evs, e)
				}
				back = evs
			default:
				t.Fatalf("no decoder for %T", v)
			}
			if err != nil {
				t.Fatalf("decode %s: %v", path, err)
			}
			if again := encodeGolden(t, back); !bytes.Equal(again, want) {
				t.Fatalf("round trip of %s differs:\n got: %s\nwant: %s", path, again, want)
			}
		})
	}
}

// TestContractsExample decodes the complete example run record
// (docs/CONTRACTS.md, "Run and job records") and checks that writing it
// again gives the same JSON up to white space: field order, nulls,
// timestamps and numbers included.
func TestContractsExample(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixtures, "records", "contracts-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r RunRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	got, err := EncodeCompact(r)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(got), want.Bytes()) {
		t.Errorf("re-encoded example differs:\n got: %s\nwant: %s", got, want.Bytes())
	}
}

func TestRecordByteRules(t *testing.T) {
	b, err := EncodeFile(goldenRecords()["run-early-failure.golden.json"])
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"rerun_of": null`, `"plan_path": null`, `"changed_files": []`, `"filters": []`,
		`"prepare_timings": []`, `"jobs": []`, `"created_at": "2026-11-25T10:15:00.412873915+00:00"`, `"git_dirty": null`,
		`"target_description": "Demo <fail-fast> & skip"`} {
		if !strings.Contains(s, want) {
			t.Errorf("encoded run record lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Z\"") {
		t.Errorf("encoded run record has a Z timestamp:\n%s", s)
	}
	// Field order follows the original's declaration order.
	order := []string{"run_id", "status", "rerun_of", "target_id", "target_description", "source_root", "snapshot_dir",
		"git_head", "git_dirty", "created_at", "finished_at", "plan_path", "prepared_outputs_path",
		"prepared_output_consumer", "prepared_output_mode", "prepared_output_invocation_mode",
		"prepared_output_invocation_wrapper_program", "prepared_output_launcher_transport_mode",
		"prepared_output_launcher_transport_program", "prepared_output_launcher_transport_host",
		"prepared_output_launcher_transport_remote_launcher_program",
		"prepared_output_launcher_transport_remote_helper_program",
		"prepared_output_launcher_transport_remote_work_dir", "changed_files", "filters", "message",
		"prepare_timings", "jobs"}
	last := -1
	for _, k := range order {
		i := strings.Index(s, `"`+k+`":`)
		if i <= last {
			t.Fatalf("field %q at %d, not after the previous field (%d)", k, i, last)
		}
		last = i
	}
	// A zero-value record still writes arrays, not null.
	z, err := EncodeCompact(RunRecord{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(z), `"jobs":null`) || strings.Contains(string(z), `"changed_files":null`) {
		t.Errorf("zero record writes null arrays: %s", z)
	}
}

func TestDecodeRunRecordDefaults(t *testing.T) {
	in := `{"run_id":"r","status":"passed","source_root":"/s","snapshot_dir":"","created_at":"2026-03-19T01:02:03Z","jobs":[],"extra_key":1}`
	var r RunRecord
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.ChangedFiles == nil || r.Filters == nil || r.PrepareTimings == nil || r.FinishedAt != nil || r.Message != nil {
		t.Errorf("defaults not applied: %+v", r)
	}
	out, _ := EncodeCompact(r)
	if !strings.Contains(string(out), `"created_at":"2026-03-19T01:02:03+00:00"`) {
		t.Errorf("Z timestamp not re-written as +00:00: %s", out)
	}
	bad := []struct{ in, want string }{
		{`{"status":"passed","source_root":"/s","snapshot_dir":"","created_at":"2026-03-19T01:02:03Z","jobs":[]}`, "run record: missing required field `run_id`"},
		{`{"run_id":"r","status":"done","source_root":"/s","snapshot_dir":"","created_at":"2026-03-19T01:02:03Z","jobs":[]}`, `expected one of "running", "passed", "failed", "skipped", got "done"`},
		{`[]`, "run record: expected a JSON object, got an array ([])"},
	}
	for _, tc := range bad {
		var r RunRecord
		err := json.Unmarshal([]byte(tc.in), &r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Unmarshal(%s) error = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestImageRecordLegacy(t *testing.T) {
	tests := []struct {
		file    string
		want    string // re-encoded compact
		wantErr string
	}{
		{"image-legacy-no-role.json", `{"project":"pika-managed-agents","alias":"pikaci/dev","fingerprint":"abc123"}`, ""},
		{"image-legacy-role.json", `{"guest_role":"pikaci-runner","project":"pika-managed-agents","alias":"pikaci/dev","fingerprint":"abc123"}`, ""},
		{"image-legacy-role-null.json", `{"project":"pika-managed-agents","alias":"pikaci/dev","fingerprint":null}`, ""},
		{"image-guest-role.json", `{"guest_role":"managed-openclaw","project":"pika-managed-agents","alias":"pika-agent/dev","fingerprint":"abc123"}`, ""},
		{"image-custom-alias.json", `{"project":"pika-managed-agents","alias":"custom/pikaci","fingerprint":"5fe8825bdf00595827f224ca2d6a28c371bb3a7501b52cfff510711a769b80e4"}`, ""},
		{"image-both-keys.json", "", "image record: both `guest_role` and its legacy spelling `role` are present; expected one"},
		{"image-both-keys-one-null.json", "", "image record: both `guest_role` and its legacy spelling `role` are present; expected one"},
		{"image-repeated-key.json", "", "image record: field `alias` appears more than once"},
		{"image-bad-role.json", "", "expected `managed-openclaw` or `pikaci-runner`, got \" pikaci-runner\""},
		{"image-no-project.json", "", "image record: missing required field `project`"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(fixtures, "records", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var r RemoteLinuxVMImageRecord
			err = json.Unmarshal(raw, &r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := EncodeCompact(r)
			if strings.TrimSpace(string(got)) != tc.want {
				t.Errorf("re-encoded = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestLegacyRunRecord reads a run record as the original wrote it before
// guest roles (legacy `role`, no `guest_role`) and re-writes it.
func TestLegacyRunRecord(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixtures, "records", "run-legacy-role.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r RunRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	img := r.Jobs[0].RemoteLinuxVMExecution.IncusImage
	if img.GuestRole == nil || *img.GuestRole != RolePikaciRunner {
		t.Fatalf("legacy role not read: %+v", img)
	}
	if r.Jobs[1].RemoteLinuxVMExecution.IncusImage.GuestRole != nil {
		t.Errorf("job without role got one")
	}
	if r.Jobs[1].RemoteLinuxVMExecution.Phases == nil || r.Filters == nil {
		t.Errorf("missing arrays not defaulted to []")
	}
	out, _ := EncodeFile(r)
	if strings.Contains(string(out), `"role"`) || !strings.Contains(string(out), `"guest_role": "pikaci-runner"`) {
		t.Errorf("legacy role not re-written as guest_role:\n%s", out)
	}
}

func TestTerminalResult(t *testing.T) {
	tests := []struct {
		in       string
		want     RunStatus
		wantCode *int32
		wantErr  string
	}{
		{`{"schema_version":1,"status":"completed","exit_code":0,"finished_at":"2026-03-19T01:09:40+00:00","message":"test passed"}`, StatusPassed, ptr(int32(0)), ""},
		{`{"schema_version":1,"status":"failed","exit_code":3,"finished_at":"2026-03-19T01:09:40+01:00","message":"test command exited with 3","details":{"k":1}}`, StatusFailed, ptr(int32(3)), ""},
		{`{"schema_version":1,"status":"failed","finished_at":"2026-03-19T01:09:40Z","message":"Incus guest bootstrap failed: x"}`, StatusFailed, nil, ""},
		{`{"schema_version":1,"status":"passed","exit_code":0,"finished_at":"2026-03-19T01:09:40+00:00","message":"test passed"}`, "", nil, `expected one of "completed", "failed", got "passed"`},
		{`{"schema_version":2,"status":"completed","finished_at":"2026-03-19T01:09:40+00:00","message":"m"}`, "", nil, "field `schema_version`: expected 1, got 2"},
		{`{"schema_version":1,"status":"completed","message":"m"}`, "", nil, "missing required field `finished_at`"},
	}
	for _, tc := range tests {
		var r TerminalResult
		err := json.Unmarshal([]byte(tc.in), &r)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Unmarshal(%s) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Unmarshal(%s): %v", tc.in, err)
			continue
		}
		if r.Status.RunStatus() != tc.want || (r.ExitCode == nil) != (tc.wantCode == nil) || (r.ExitCode != nil && *r.ExitCode != *tc.wantCode) {
			t.Errorf("Unmarshal(%s) = %+v", tc.in, r)
		}
	}
}

func TestLifecycleEventTagFirst(t *testing.T) {
	evs := goldenRecords()["events.golden.jsonl"].([]LifecycleEvent)
	for _, e := range evs {
		b, err := EncodeCompact(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(`{"event":"`+e.Event+`"`)) {
			t.Errorf("event does not start with its tag: %s", b)
		}
	}
	var e LifecycleEvent
	if err := json.Unmarshal([]byte(`{"event":"run_paused"}`), &e); err == nil {
		t.Error("unknown event accepted")
	}
}
