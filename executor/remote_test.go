package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"jerichoci/model"
)

// fakeBackend is a scriptable Backend: the unit tests of the phase logic
// use it; the same paths run against the real incusd in executor/incus.
type fakeBackend struct {
	mu          sync.Mutex
	images      map[string]string // alias -> fingerprint
	vms         bool
	vmImage     bool // the alias points at a VM image
	createErr   error
	deleteErr   error
	runnerCode  int
	runnerBlock bool // the runner never exits until ctx is done
	result      string
	created     []InstanceSpec
	deleted     []string
	files       map[string][]byte
	// output writes the runner's output; nil writes two stdout lines (the
	// last without a newline) and one stderr line.
	output func(stdout, stderr io.Writer)
	// guestFiles are pulled by guest path; result.json comes from result
	// and logs/guest.log is "guest log\n" unless given here.
	guestFiles  map[string]string
	guestLogErr bool             // the pull of logs/guest.log fails half-way
	pullLimits  map[string]int64 // the limit of each pull, by guest path
	root        RootDisk         // zero: pool "default", driver "btrfs"
	rootErr     error
	rootCalls   int
	// teardownGate, when set, holds the delete after the job until closed;
	// deleteFails fails that many deletes after the job.
	teardownGate chan struct{}
	deleteFails  int
	configSets   map[string][]map[string]string // SetInstanceConfig calls by instance
	runnerArgs   []string                       // the last runner command
	runnerExecs  int                            // runner commands run
	// runnerWait, when set, makes the runner print "early" and wait (for
	// its request) before it goes on.
	runnerWait func(ctx context.Context, instance string) error
}

func (f *fakeBackend) Image(_ context.Context, alias string) (ImageInfo, error) {
	if fp, ok := f.images[alias]; ok {
		t := model.InstanceContainer
		if f.vmImage {
			t = model.InstanceVirtualMachine
		}
		return ImageInfo{Fingerprint: fp, Type: t}, nil
	}
	return ImageInfo{}, fmt.Errorf("image alias %q: %w", alias, ErrNotFound)
}

func (f *fakeBackend) VirtualMachines(context.Context) (bool, string, error) {
	return f.vms, "vhost_vsock kernel module not loaded", nil
}

func (f *fakeBackend) CreateInstance(_ context.Context, spec InstanceSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, spec)
	return f.createErr
}

func (f *fakeBackend) SetInstanceConfig(_ context.Context, name string, config map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.configSets == nil {
		f.configSets = map[string][]map[string]string{}
	}
	f.configSets[name] = append(f.configSets[name], config)
	return nil
}

func (f *fakeBackend) DeleteInstance(ctx context.Context, name string) error {
	f.mu.Lock()
	gate, created := f.teardownGate, len(f.created) > 0
	f.mu.Unlock()
	if gate != nil && created { // the teardown after the job, not the stale delete
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, name)
	if f.deleteFails > 0 && created {
		f.deleteFails--
		return errors.New("incus: delete instance: 500 busy")
	}
	return f.deleteErr
}

func (f *fakeBackend) Exec(ctx context.Context, name string, req ExecRequest, stdout, stderr io.Writer) (int, error) {
	if req.Command[0] == "true" {
		return 0, nil
	}
	f.mu.Lock()
	f.runnerArgs = req.Command
	f.runnerExecs++
	wait := f.runnerWait
	f.mu.Unlock()
	if wait != nil { // a runner started ahead of its job
		fmt.Fprint(stdout, "early\n")
		if err := wait(ctx, name); err != nil {
			return -1, err
		}
	}
	if f.output != nil {
		f.output(stdout, stderr)
	} else {
		fmt.Fprint(stdout, "line one\nline two")
		fmt.Fprint(stderr, "warning\n")
	}
	if f.runnerBlock {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return f.runnerCode, nil
}

func (f *fakeBackend) PushFile(_ context.Context, _, path string, data []byte, _, _ int, _ os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string][]byte{}
	}
	f.files[path] = data
	return nil
}

func (f *fakeBackend) PullFile(_ context.Context, _, path string, w io.Writer, limit int64) (int64, error) {
	f.mu.Lock()
	if f.pullLimits == nil {
		f.pullLimits = map[string]int64{}
	}
	f.pullLimits[path] = limit
	f.mu.Unlock()
	data, ok := f.guestFiles[path]
	switch {
	case ok:
	case path == GuestDir+"/result.json" && f.result != "":
		data = f.result
	case path == GuestDir+"/logs/guest.log":
		data = "guest log\n"
	default:
		return 0, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if path == GuestDir+"/logs/guest.log" && f.guestLogErr {
		n, _ := io.WriteString(w, data[:len(data)/2])
		return int64(n), errors.New("connection reset by peer")
	}
	if limit > 0 && int64(len(data)) > limit {
		n, _ := io.WriteString(w, data[:limit])
		return int64(n), fmt.Errorf("pull %s: file is larger than the limit of %d bytes", path, limit)
	}
	n, err := io.WriteString(w, data)
	return int64(n), err
}

func (f *fakeBackend) RootDisk(_ context.Context, _ []string) (RootDisk, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rootCalls++
	if f.rootErr != nil {
		return RootDisk{}, f.rootErr
	}
	if f.root == (RootDisk{}) {
		return RootDisk{Device: "root", Pool: "default", Driver: "btrfs"}, nil
	}
	return f.root, nil
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newJob(t *testing.T, log io.Writer) Job {
	role := model.RolePikaciRunner
	return Job{RunID: "run-1", ID: "job", Description: "d", TimeoutSecs: 30, Command: model.Shell("true"),
		Runtime:     model.IncusRuntimeFor(model.RolePikaciRunner),
		Image:       model.IncusImage{Role: role, Alias: "pikaci/dev", Recorded: &role},
		SnapshotDir: t.TempDir(), JobDir: t.TempDir(), HostLog: log}
}

const passedResult = `{"schema_version":1,"status":"completed","exit_code":0,"finished_at":"2026-03-19T01:09:40+00:00","message":"test passed"}`

func TestExecutePassed(t *testing.T) {
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
	var log syncBuf
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
	x.Config.Owner = "worker-1"
	job := newJob(t, &log)
	res, err := x.Execute(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != model.StatusPassed || *res.ExitCode != 0 || res.Message != "test passed" {
		t.Errorf("result = %+v", res)
	}
	var phases []string
	for _, p := range res.Execution.Phases {
		phases = append(phases, string(p.Phase))
	}
	if got := strings.Join(phases, ","); got != "prepare_directories,stage_workspace_snapshot,prepare_runtime,launch_guest,wait_for_completion,collect_artifacts" {
		t.Errorf("phases = %s", got)
	}
	img := res.Execution.IncusImage
	if img == nil || img.GuestRole == nil || *img.GuestRole != model.RolePikaciRunner || *img.Fingerprint != "fp1" || img.Project != "pika-managed-agents" {
		t.Errorf("image = %+v", img)
	}
	spec := be.created[0]
	if spec.Name != "pikaci-af8dc8858830" || spec.Type != model.InstanceContainer ||
		strings.Join(spec.Profiles, ",") != "default,pika-agent-dev" || spec.Config["limits.cpu"] != "2" ||
		spec.Config["limits.memory"] != "4096MiB" || spec.Config[ConfigGuestRole] != "pikaci-runner" ||
		spec.Config[ConfigOwner] != "worker-1" || spec.Config[ConfigRunID] != "run-1" || spec.Config[ConfigJobID] != "job" {
		t.Errorf("spec = %+v", spec)
	}
	if spec.Config["security.guestapi"] != "false" || spec.RootDiskSize != "12GiB" ||
		spec.RootDisk != (RootDisk{Device: "root", Pool: "default", Driver: "btrfs"}) {
		t.Errorf("spec = %+v, want the guest API off and a 12GiB root disk", spec)
	}
	if len(spec.Disks) != 1 || !spec.Disks[0].ReadOnly || spec.Disks[0].Path != "/workspace/snapshot" {
		t.Errorf("disks = %+v", spec.Disks)
	}
	// Stale delete before create, cleanup after.
	if strings.Join(be.deleted, ",") != "pikaci-af8dc8858830,pikaci-af8dc8858830" {
		t.Errorf("deleted = %v", be.deleted)
	}
	want := `{
  "schema_version": 2,
  "command": "bash --noprofile --norc -lc 'true'",
  "timeout_secs": 30,
  "run_as_root": false
}`
	if got := string(be.files[GuestRequestPath]); got != want {
		t.Errorf("guest request = %s", got)
	}
	hl := log.String()
	for _, w := range []string{"[runner:stdout] line one\n", "[runner:stdout] line two\n", "[runner:stderr] warning\n",
		"using a container", "vhost_vsock kernel module not loaded"} {
		if !strings.Contains(hl, w) {
			t.Errorf("host log lacks %q:\n%s", w, hl)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(job.JobDir, "artifacts", "guest.log")); string(b) != "guest log\n" {
		t.Errorf("collected guest.log = %q", b)
	}
}

func TestExecuteFailures(t *testing.T) {
	tests := []struct {
		name       string
		be         fakeBackend
		alias      string
		timeout    uint64
		vm         bool // the job asks for a virtual machine
		maxOutput  int64
		wantStatus model.RunStatus
		wantMsg    string // result message, or error text when wantErr
		wantErr    bool
		wantPhases int
		wantDelete int
	}{
		{name: "command failed", be: fakeBackend{result: `{"schema_version":1,"status":"failed","exit_code":3,"finished_at":"2026-03-19T01:09:40+00:00","message":"test command exited with 3"}`},
			wantStatus: model.StatusFailed, wantMsg: "test command exited with 3", wantPhases: 6, wantDelete: 2},
		{name: "missing alias", alias: "custom/none", wantErr: true, wantPhases: 3, wantDelete: 0,
			wantMsg: "Incus image `custom/none` is not available in project `pika-managed-agents` on localhost; import it first (for example with `jerichoci image build-import --role pikaci-runner --project pika-managed-agents`)"},
		{name: "timeout", be: fakeBackend{runnerBlock: true}, timeout: 1, wantStatus: model.StatusFailed, wantMsg: "timed out after 1s", wantPhases: 5, wantDelete: 2},
		{name: "output past its limit stops the runner", maxOutput: 1 << 20, wantStatus: model.StatusFailed, wantPhases: 5, wantDelete: 2,
			be:      fakeBackend{runnerBlock: true, output: func(stdout, _ io.Writer) { _, _ = stdout.Write(bytes.Repeat([]byte("y\n"), 1<<20)) }},
			wantMsg: "output exceeded 1MiB (the job output limit, --max-job-output); the job was stopped"},
		{name: "legacy passed result rejected", be: fakeBackend{result: `{"schema_version":1,"status":"passed","finished_at":"2026-03-19T01:09:40+00:00","message":"x"}`},
			wantErr: true, wantMsg: "load guest terminal result: ", wantPhases: 6, wantDelete: 2},
		{name: "missing result", wantErr: true, wantMsg: "read Incus guest path `/run/pika-cloud/result.json` from localhost failed with", wantPhases: 6, wantDelete: 2},
		{name: "create fails", be: fakeBackend{createErr: errors.New("Failed creating instance record: Instance type \"virtual-machine\" is not supported on this server: vhost_vsock kernel module not loaded")},
			wantErr: true, wantMsg: "vhost_vsock kernel module not loaded", wantPhases: 3, wantDelete: 2},
		{name: "virtual machine on a host without VMs", vm: true, wantErr: true, wantPhases: 3, wantDelete: 0,
			wantMsg: "instance type `virtual-machine` needs a virtual machine, but the Incus server on localhost cannot run virtual machines: vhost_vsock kernel module not loaded"},
		{name: "auto with a VM image on a host without VMs", be: fakeBackend{vmImage: true}, wantErr: true, wantPhases: 3, wantDelete: 0,
			wantMsg: "image `pikaci/dev` is a virtual-machine image, but the Incus server on localhost cannot run virtual machines: vhost_vsock kernel module not loaded"},
		{name: "virtual machine with a container image", be: fakeBackend{vms: true}, vm: true, wantErr: true, wantPhases: 3, wantDelete: 0,
			wantMsg: "instance type `virtual-machine` was asked for, but image `pikaci/dev` is a container image"},
		{name: "cleanup fails after success", be: fakeBackend{result: passedResult, deleteErr: errors.New("incus: delete: 500")},
			wantErr: true, wantMsg: "delete instance \"pikaci-af8dc8858830\": incus: delete: 500", wantPhases: 6, wantDelete: 2},
		{name: "both fail", be: fakeBackend{deleteErr: errors.New("boom")}, wantErr: true,
			wantMsg: "also failed to clean up remote Linux VM backend `incus`: delete instance \"pikaci-af8dc8858830\": boom: read Incus guest path", wantPhases: 6, wantDelete: 2},
	}
	for i := range tests {
		tc := &tests[i]
		t.Run(tc.name, func(t *testing.T) {
			be := &tc.be
			be.images = map[string]string{"pikaci/dev": "fp1"}
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
			if tc.maxOutput != 0 {
				x.Config.MaxOutputBytes = tc.maxOutput
			}
			job := newJob(t, io.Discard)
			if tc.alias != "" {
				job.Image = model.IncusImage{Role: model.RolePikaciRunner, Alias: tc.alias}
			}
			if tc.timeout != 0 {
				job.TimeoutSecs = tc.timeout
			}
			if tc.vm {
				job.Runtime.Incus.InstanceType = model.InstanceVirtualMachine
			}
			res, err := x.Execute(t.Context(), job)
			exe := res.Execution
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantMsg)
				}
				exe = ExecutionOf(err)
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if res.Status != tc.wantStatus || res.Message != tc.wantMsg {
					t.Errorf("result = %+v", res)
				}
			}
			if exe == nil || len(exe.Phases) != tc.wantPhases {
				t.Errorf("execution = %+v, want %d phases", exe, tc.wantPhases)
			}
			if len(be.deleted) != tc.wantDelete {
				t.Errorf("deleted %v, want %d deletes", be.deleted, tc.wantDelete)
			}
		})
	}
}

func TestExecuteCleanupOnCancelledContext(t *testing.T) {
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, runnerBlock: true}
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := x.Execute(ctx, newJob(t, io.Discard))
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if len(be.deleted) != 2 {
		t.Errorf("cleanup did not run on a cancelled job: deleted %v", be.deleted)
	}
}

func TestCollect(t *testing.T) {
	big := strings.Repeat("e", smallArtifactLimit+1)
	tests := []struct {
		name        string
		be          fakeBackend
		wantErr     string
		wantGuest   string // artifacts/guest.log
		wantFiles   map[string]string
		wantMissing []string // artifacts not written
		wantHost    []string
	}{
		{name: "all artifacts",
			be: fakeBackend{guestFiles: map[string]string{GuestDir + "/logs/guest.log": "the guest's log\n",
				GuestDir + "/events.jsonl": "{}\n", GuestDir + "/status.json": `{"state":"completed"}`}},
			wantGuest: "the guest's log\n",
			wantFiles: map[string]string{"events.jsonl": "{}\n", "status.json": `{"state":"completed"}`, "result.json": passedResult}},
		{name: "guest log pull fails half-way",
			be:        fakeBackend{guestLogErr: true, guestFiles: map[string]string{GuestDir + "/logs/guest.log": "partial log from the guest\n"}},
			wantGuest: "line one\nline twowarning\n",
			wantHost:  []string{"[pikaci] could not collect /run/pika-cloud/logs/guest.log: connection reset by peer"}},
		{name: "events too large",
			be:          fakeBackend{guestFiles: map[string]string{GuestDir + "/events.jsonl": big}},
			wantGuest:   "guest log\n",
			wantMissing: []string{"events.jsonl"},
			wantHost:    []string{"[pikaci] could not collect /run/pika-cloud/events.jsonl: pull /run/pika-cloud/events.jsonl: file is larger than the limit of 1048576 bytes"}},
		{name: "result too large",
			be:      fakeBackend{guestFiles: map[string]string{GuestDir + "/result.json": big}},
			wantErr: "read Incus guest path `/run/pika-cloud/result.json` from localhost failed with pull /run/pika-cloud/result.json: file is larger than the limit of 1048576 bytes"},
	}
	for i := range tests {
		tc := &tests[i]
		t.Run(tc.name, func(t *testing.T) {
			be := &tc.be
			be.images, be.result = map[string]string{"pikaci/dev": "fp1"}, passedResult
			var log syncBuf
			job := newJob(t, &log)
			_, err := (&RemoteLinuxVM{Backend: be, Config: DefaultConfig()}).Execute(t.Context(), job)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			artifacts := filepath.Join(job.JobDir, "artifacts")
			if tc.wantGuest != "" {
				if b, err := os.ReadFile(filepath.Join(artifacts, "guest.log")); err != nil || string(b) != tc.wantGuest {
					t.Errorf("guest.log = %q, %v; want %q", b, err, tc.wantGuest)
				}
			}
			// atomicfile writes guest.log under a hidden temporary name.
			if left, _ := filepath.Glob(filepath.Join(artifacts, ".guest.log.tmp-*")); len(left) > 0 {
				t.Errorf("guest.log's temporary file left behind: %q", left)
			}
			for name, want := range tc.wantFiles {
				if b, err := os.ReadFile(filepath.Join(artifacts, name)); err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", name, b, err, want)
				}
			}
			for _, name := range tc.wantMissing {
				if _, err := os.Stat(filepath.Join(artifacts, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was written: %v", name, err)
				}
			}
			for _, w := range tc.wantHost {
				if !strings.Contains(log.String(), w) {
					t.Errorf("host log lacks %q:\n%s", w, log.String())
				}
			}
			want := map[string]int64{GuestDir + "/logs/guest.log": 0, GuestDir + "/events.jsonl": smallArtifactLimit,
				GuestDir + "/status.json": smallArtifactLimit, GuestDir + "/result.json": smallArtifactLimit}
			for path, limit := range be.pullLimits {
				if want[path] != limit {
					t.Errorf("pulled %s with limit %d, want %d", path, limit, want[path])
				}
			}
		})
	}
}
