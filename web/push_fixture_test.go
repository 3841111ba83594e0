package web

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"jerichoci/model"
	"jerichoci/run"
	"jerichoci/run/protocol"
)

// The ten branch lanes of pika's catalog (lanes/pika-lanes.json), as one
// push sees them.
var pikaLanes = []string{"check-agent-contracts", "check-pika-rust", "check-notifications", "check-pikachat",
	"check-pikachat-typescript", "check-pikachat-openclaw-e2e", "check-pika-followup", "check-fixture", "check-rmp",
	"check-apple-host-sanity"}

const pushHead = "4eef499fd13da5aec04714b080cc05fdcf655bbc"

// laneFixture is one run of a lane written into a state root.
type laneFixture struct {
	lane     string
	runID    string
	delivery uint64
	status   model.RunStatus
	exit     *int32
	jobMsg   string // the job's message
	runMsg   string // the run's message
	startS   int    // seconds after the push's enqueue when its job starts
	ranS     int    // how long it ran
	log      string // host.log
	noJobs   bool   // a run that never started (no job record)
	running  bool
	// before are jobs of the run that passed before its lane's job.
	before []string
}

func i32(v int32) *int32 { return &v }

// passLog is a passing lane's host.log, as the runner writes it.
func passLog(lane string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[pikaci] running %s\n", lane)
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "[runner:stdout] test %s::case_%02d ... ok\n", strings.ReplaceAll(lane, "-", "_"), i)
	}
	b.WriteString("[runner:stdout] test result: ok. 30 passed; 0 failed\n[pikaci] guest runner exited with 0\n")
	return b.String()
}

// failLog ends with a failing assertion on stderr among stdout lines.
func failLog() string {
	var b strings.Builder
	b.WriteString("[pikaci] running check-pika-followup\n")
	for i := 1; i <= 60; i++ {
		fmt.Fprintf(&b, "[runner:stdout] test followup::case_%02d ... ok\n", i)
	}
	b.WriteString("[runner:stdout] test followup::relay_roundtrip ... FAILED\n")
	b.WriteString("[runner:stderr] thread 'followup::relay_roundtrip' panicked at crates/pika-followup/src/relay.rs:88:9:\n")
	b.WriteString("[runner:stderr] assertion `left == right` failed\n[runner:stderr]   left: 2\n[runner:stderr]  right: 3\n")
	b.WriteString("[runner:stdout] test result: FAILED. 60 passed; 1 failed\n")
	b.WriteString("[runner:stderr] error: test failed, to rerun pass `-p pika-followup --lib`\n")
	b.WriteString("[pikaci] guest runner exited with 101\n")
	return b.String()
}

// writePush writes the runs of one push (group id, stream sequence of its
// first job) into root, enqueued at at.
func writePush(t *testing.T, root, group string, seq uint64, at time.Time, lanes []string, runs []laneFixture) {
	t.Helper()
	st := run.NewStore(root)
	for i, f := range runs {
		created := at.Add(time.Duration(f.startS)*time.Second - 2*time.Second)
		rec := model.RunRecord{RunID: f.runID, Status: f.status, TargetID: strPtr("pre-merge-" + strings.TrimPrefix(f.lane, "check-")),
			TargetDescription: strPtr("Run the " + f.lane + " lane"), SourceRoot: "/var/lib/jerichoci/sources/" + pushHead[:12],
			SnapshotDir: filepath.Join(root, "runs", f.runID, "snapshot"), GitHead: strPtr(pushHead), GitDirty: boolPtr(false),
			CreatedAt: model.At(created), ChangedFiles: []string{"crates/pika-followup/src/relay.rs"}, Filters: []string{},
			PrepareTimings: []model.PrepareTimingRecord{}}
		if f.runMsg != "" {
			rec.Message = strPtr(f.runMsg)
		}
		start := at.Add(time.Duration(f.startS) * time.Second)
		end := start.Add(time.Duration(f.ranS) * time.Second)
		if !f.running {
			rec.FinishedAt = model.TimestampPtr(end)
		}
		if !f.noJobs {
			j := model.JobRecord{ID: strings.TrimPrefix(f.lane, "check-"), Description: "Run the " + f.lane + " lane",
				Status: f.status, Executor: model.ExecutorRemoteLinuxVM, TimeoutSecs: 1800,
				HostLogPath:  st.HostLogPath(f.runID, strings.TrimPrefix(f.lane, "check-")),
				GuestLogPath: filepath.Join(root, "runs", f.runID, "jobs", strings.TrimPrefix(f.lane, "check-"), "artifacts", "guest.log"),
				StartedAt:    model.At(start), ExitCode: f.exit}
			if !f.running {
				j.FinishedAt = model.TimestampPtr(end)
			}
			if f.jobMsg != "" {
				j.Message = strPtr(f.jobMsg)
			}
			for k, id := range f.before {
				b := j
				b.ID, b.Description, b.Status, b.ExitCode, b.Message = id, "Run "+id, model.StatusPassed, i32(0), nil
				b.HostLogPath = st.HostLogPath(f.runID, id)
				b.StartedAt = model.At(start.Add(time.Duration(k*10) * time.Second))
				b.FinishedAt = model.TimestampPtr(start.Add(time.Duration(k*10+9) * time.Second))
				rec.Jobs = append(rec.Jobs, b)
				writeLog(t, b.HostLogPath, passLog(id))
			}
			rec.Jobs = append(rec.Jobs, j)
			writeLog(t, j.HostLogPath, f.log)
		}
		if err := os.MkdirAll(filepath.Join(root, "runs", f.runID), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := st.WriteRun(rec); err != nil {
			t.Fatal(err)
		}
		d := f.delivery
		if d == 0 {
			d = 1
		}
		jf := protocol.JobFile{JobID: fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, i), Worker: "ci-7.1", Delivery: d,
			StreamSeq: seq + uint64(i), Requester: "forge:branch-149", EnqueuedAt: at.UTC().Format(time.RFC3339Nano), Lane: f.lane,
			Group: &model.JobGroup{ID: group, Lanes: lanes}}
		if f.delivery > 1 || strings.HasSuffix(f.runID, "-a1") {
			// attempts of one job share its id and sequence
			jf.JobID = fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, 99)
			jf.StreamSeq = seq + 99
		}
		if err := st.WriteRunFile(f.runID, protocol.JobFileName, jf); err != nil {
			t.Fatal(err)
		}
	}
}

func writeLog(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func strPtr(s string) *string { return &s }
func boolPtr(b bool) *bool    { return &b }

// pushRoot is a state root holding two pushes: #186, the ten pika lanes
// at 4eef499 (nine passed, check-pika-followup failed a test, and
// check-notifications handed back once on infrastructure before it
// passed), and an older #150 whose lanes fail every other way.
func pushRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	var runs []laneFixture
	for i, lane := range pikaLanes {
		f := laneFixture{lane: lane, runID: fmt.Sprintf("20261125T0900%02dZ-186000%02d", 8+i, i), status: model.StatusPassed,
			exit: i32(0), startS: 8 + i, ranS: 40 + 11*i, log: passLog(lane)}
		switch lane {
		case "check-pika-followup":
			f.status, f.exit, f.ranS, f.log = model.StatusFailed, i32(101), 171-8-i, failLog()
			f.before = []string{"pika-followup-lint", "pika-followup-build"}
		case "check-notifications":
			runs = append(runs, laneFixture{lane: lane, runID: "20261125T090009Z-18600002-a1", delivery: 1, status: model.StatusFailed,
				runMsg: "infrastructure error on delivery 1 of 5, the job goes back to the queue: launch instance: incus: operation timed out",
				startS: 9, ranS: 5, log: "[pikaci] running check-notifications\n[pikaci] launch guest: operation timed out\n"})
			f.delivery, f.startS, f.runID = 2, 30, "20261125T090030Z-18600002-a2"
		}
		runs = append(runs, f)
	}
	writePush(t, root, "push-4eef499-186", 186, at, pikaLanes, runs)

	old := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	oldLanes := []string{"check-pika-rust", "check-pikachat", "check-fixture", "check-rmp", "check-pika-rsut"}
	writePush(t, root, "push-1a2b3c4-150", 150, old, oldLanes, []laneFixture{
		{lane: "check-pika-rust", runID: "20261124T150005Z-15000000", status: model.StatusFailed, jobMsg: "timed out after 1800s",
			startS: 5, ranS: 1800, log: "[runner:stdout] building…\n[pikaci] timed out after 1800s\n"},
		{lane: "check-pikachat", runID: "20261124T150006Z-15000001", status: model.StatusFailed, runMsg: "cancelled", jobMsg: "cancelled",
			startS: 6, ranS: 20, log: "[runner:stdout] compiling pikachat\n"},
		{lane: "check-fixture", runID: "20261124T150007Z-15000002", status: model.StatusFailed, jobMsg: run.MsgHostJobsRefused,
			startS: 7, ranS: 0, log: "[pikaci] " + run.MsgHostJobsRefused + "\n"},
		{lane: "check-rmp", runID: "20261124T150008Z-15000003", status: model.StatusPassed, exit: i32(0), startS: 8, ranS: 50, log: passLog("check-rmp")},
		{lane: "check-pika-rsut", runID: "20261124T150001Z-15000004", status: model.StatusFailed, runMsg: "unknown job `check-pika-rsut`",
			startS: 1, noJobs: true},
	})
	return root
}
