package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/internal/atomicfile"
	"jerichoci/internal/backoff"
	"jerichoci/internal/mask"
	"jerichoci/model"
)

// Guest paths (docs/CONTRACTS.md, "The guest request and the runner").
const (
	GuestDir         = "/run/pika-cloud"
	GuestRequestPath = GuestDir + "/guest-request.json"
	// GuestSecretEnvPath holds a job's secret_env values until the runner
	// reads (and deletes) it.
	GuestSecretEnvPath = GuestDir + "/secret-env.json"
	GuestSnapshotPath  = "/workspace/snapshot"
	// DefaultRunnerPath is where the original's image has its runner.
	DefaultRunnerPath = "/run/current-system/sw/bin/pikaci-incus-run"
)

// Instance config keys jerichoci sets, so its instances can be found.
const (
	ConfigRunID = "user.jerichoci.run_id"
	ConfigJobID = "user.jerichoci.job_id"
	ConfigOwner = "user.jerichoci.owner"
	// ConfigFleet names the fleet of daemons whose instance it is; only
	// that fleet's reapers may touch it.
	ConfigFleet = "user.jerichoci.fleet"
	// ConfigProcess names the process that created the instance
	// (HOST/BOOT/PID/START, internal/procid): once that process is
	// provably gone, its instances are (docs/RELIABILITY.md).
	ConfigProcess   = "user.jerichoci.process"
	ConfigGuestRole = "user.pika.guest_role"
)

// RemoteLinuxVM runs Incus jobs: one throwaway instance per job.
type RemoteLinuxVM struct {
	Backend Backend
	Config  Config
	Log     *zap.Logger
	Now     func() time.Time
	// Teardowns, when set, deletes each instance in the background once
	// its job's result is in (the daemon); a teardown that fails is the
	// reaper's, not the job's. Nil keeps the original's rule: the instance
	// is deleted before Execute returns and a failed delete fails the job.
	Teardowns *Teardowns
	// Pool, when set, hands jobs ready instances (the daemon's warm pool);
	// staged jobs, whose payload disks differ per job, create their own.
	Pool *Pool
	// Store gives the closure of a staged job's outputs, the only store
	// paths its guest sees (closureDisks); a staged job fails without it.
	Store StoreClosure

	// NixStoreDir is the host's store directory, where a staged job's
	// closure lies; "" is /nix/store.
	NixStoreDir string

	mu     sync.Mutex
	images map[string]cachedImage // by alias
}

// Execute runs one job through the six phases and always cleans up.
func (x *RemoteLinuxVM) Execute(ctx context.Context, job Job) (Result, error) {
	if !job.Runtime.IsIncus() {
		return Result{}, fmt.Errorf("job `%s`: the remote Linux VM executor runs only Incus jobs, got runtime %q", job.ID, job.Runtime.Kind)
	}
	j := &jobRun{x: x, job: job, name: model.InstanceName(job.RunID, job.ID),
		exe: &model.RemoteLinuxVMExecutionRecord{Backend: model.BackendIncus, Phases: []model.PhaseRecord{}}}
	j.log = x.logger().With(zap.String("run_id", job.RunID), zap.String("job", job.ID), zap.String("instance", j.name))
	res, err := j.execute(ctx)
	if j.keysSet != nil {
		if kerr := <-j.keysSet; kerr != nil {
			// The teardown deletes it all the same; until then it is this
			// process's pool instance, which no reaper touches.
			j.log.Warn("set the job's keys on the pool instance", zap.Error(kerr))
		}
	}
	if j.created && x.Teardowns != nil {
		j.hostf("instance %s is deleted in the background, after the result", j.name)
		x.Teardowns.Go(j.name, x.cleanupTimeout(), j.delete)
		j.created = false
	}
	if j.created {
		cerr := j.cleanup(ctx)
		switch {
		case err == nil && cerr != nil:
			return Result{}, &Error{Err: cerr, Execution: j.exe}
		case err != nil && cerr != nil:
			err = fmt.Errorf("also failed to clean up remote Linux VM backend `incus`: %v: %w", cerr, err)
		}
	}
	if err != nil {
		return Result{}, &Error{Err: err, Execution: j.exe}
	}
	res.Execution = j.exe
	return res, nil
}

// PrepareRunner is the job's runner prepare node (the original's
// prepare_backend_state): the project must be set and the job's image must
// be there, so a missing image fails the run before any job starts; a job
// that needs a virtual machine fails there too on a server without them.
func (x *RemoteLinuxVM) PrepareRunner(ctx context.Context, job Job) error {
	if x.Config.Project == "" {
		return errors.New("runtime spec field `project` must be non-empty")
	}
	img, err := x.image(ctx, job)
	if err != nil {
		return err
	}
	if err := x.vmRefused(ctx, job, img); err != nil {
		return err
	}
	if job.HostLog != nil {
		fmt.Fprintf(job.HostLog, "[pikaci] Incus image `%s` is available in project `%s` on %s\n", job.Image.Alias, x.Config.Project, x.Config.Host)
	}
	return nil
}

// image looks the job's image up, with the original's message when it is missing.
func (x *RemoteLinuxVM) image(ctx context.Context, job Job) (ImageInfo, error) {
	cfg, alias := x.Config, job.Image.Alias
	// The runner prepare node looked it up a moment ago: the same answer
	// serves the job (an executor runs one attempt's jobs).
	x.mu.Lock()
	img, ok := x.images[alias]
	x.mu.Unlock()
	if ok && time.Since(img.at) < imageCacheTTL {
		return img.ImageInfo, nil
	}
	info, err := x.Backend.Image(ctx, alias)
	if errors.Is(err, ErrNotFound) {
		//lint:ignore ST1005 the original's exact message (docs/CONTRACTS.md, "Exact messages")
		return ImageInfo{}, fmt.Errorf("Incus image `%s` is not available in project `%s` on %s; import it first (for example with `jerichoci image build-import --role %s --project %s`)",
			alias, cfg.Project, cfg.Host, job.Image.Role, cfg.Project)
	}
	if err != nil {
		return ImageInfo{}, fmt.Errorf("look up Incus image `%s` in project `%s`: %w", alias, cfg.Project, err)
	}
	x.mu.Lock()
	if x.images == nil {
		x.images = map[string]cachedImage{}
	}
	x.images[alias] = cachedImage{ImageInfo: info, at: time.Now()}
	x.mu.Unlock()
	return info, nil
}

// imageCacheTTL bounds how long an image lookup serves the same run.
const imageCacheTTL = 10 * time.Second

type cachedImage struct {
	ImageInfo
	at time.Time
}

type jobRun struct {
	x       *RemoteLinuxVM
	job     Job
	name    string
	exe     *model.RemoteLinuxVMExecutionRecord
	log     *zap.Logger
	created bool
	pooled  bool          // taken from the warm pool
	keysSet chan error    // a pooled instance: the job's keys are on it
	pre     *preExec      // a pooled instance's runner, started ahead
	output  *runnerOutput // the runner's output, once it ran
	// stateDir is the host directory the instance has as GuestDir
	// (statedir.go); "" when the guest keeps its own.
	stateDir string
}

func (j *jobRun) hostf(format string, a ...any) {
	if j.job.HostLog != nil {
		fmt.Fprintf(j.job.HostLog, "[pikaci] "+format+"\n", a...)
	}
}

// phase times fn as one phase record; a failing phase is recorded too.
func (j *jobRun) phase(p model.Phase, fn func() error) error {
	start := j.x.now()
	err := fn()
	end := j.x.now()
	j.exe.Phases = append(j.exe.Phases, model.PhaseRecord{Phase: p, StartedAt: model.At(start), FinishedAt: model.At(end),
		DurationMS: uint64(end.Sub(start).Milliseconds())})
	return err
}

func (j *jobRun) execute(ctx context.Context) (Result, error) {
	job := j.job
	artifacts := filepath.Join(job.JobDir, "artifacts")
	if err := j.phase(model.PhasePrepareDirectories, func() error {
		return os.MkdirAll(artifacts, 0o755)
	}); err != nil {
		return Result{}, fmt.Errorf("prepare job directories: %w", err)
	}
	if err := j.phase(model.PhaseStageWorkspaceSnapshot, func() error {
		if job.SnapshotDir == "" {
			return nil
		}
		fi, err := os.Stat(job.SnapshotDir)
		if err == nil && !fi.IsDir() {
			err = fmt.Errorf("%s is not a directory", job.SnapshotDir)
		}
		return err
	}); err != nil {
		return Result{}, fmt.Errorf("stage workspace snapshot: %w", err)
	}
	if err := j.phase(model.PhasePrepareRuntime, func() error { return j.prepareRuntime(ctx, artifacts) }); err != nil {
		return Result{}, err
	}
	var reqJSON []byte
	if err := j.phase(model.PhaseLaunchGuest, func() error {
		req, err := model.NewGuestRequest(job.Command, job.TimeoutSecs)
		if err != nil {
			return fmt.Errorf("compile job command: %w", err)
		}
		if err := j.passSecretEnv(ctx, &req); err != nil {
			return err
		}
		if reqJSON, err = req.Encode(); err != nil {
			return err
		}
		j.hostf("launching guest runner: %s", req.Command)
		if j.pooled && j.x.Config.Transfer.api() {
			if err := writeGuestRequest(ctx, j.x.Backend, j.name, reqJSON); err != nil {
				return fmt.Errorf("write guest request to %s: %w", j.name, err)
			}
			return nil
		}
		if j.stateDir != "" && !j.pooled {
			// On the host, in the state directory the instance has as GuestDir.
			if err := atomicfile.WriteFile(filepath.Join(j.stateDir, "guest-request.json"), reqJSON, 0o644); err != nil {
				return fmt.Errorf("write guest request for %s: %w", j.name, err)
			}
			return nil
		}
		if j.pooled {
			// On the host, in the directory the instance sees read-only.
			if err := j.x.Pool.writeRequest(j.name, reqJSON); err != nil {
				return fmt.Errorf("write guest request for %s: %w", j.name, err)
			}
			return nil
		}
		if err := j.x.Backend.PushFile(ctx, j.name, GuestRequestPath, reqJSON, 0, 0, 0o644); err != nil {
			return fmt.Errorf("write guest request to %s: %w", j.name, err)
		}
		return nil
	}); err != nil {
		return Result{}, err
	}
	var (
		exitCode int
		timedOut bool
	)
	if err := j.phase(model.PhaseWaitForCompletion, func() error {
		var err error
		exitCode, timedOut, err = j.waitForRunner(ctx, artifacts)
		return err
	}); err != nil {
		return Result{}, err
	}
	if timedOut {
		j.hostf("timeout after %ds, killing remote Linux VM backend process", job.TimeoutSecs)
		j.outputSummary()
		return Result{Status: model.StatusFailed, Message: fmt.Sprintf("timed out after %ds", job.TimeoutSecs)}, nil
	}
	if j.output.exceeded() {
		return j.outputOverResult(), nil
	}
	j.hostf("guest runner exited with %d", exitCode)
	j.outputSummary()
	var res Result
	if err := j.phase(model.PhaseCollectArtifacts, func() error {
		var err error
		res, err = j.collect(ctx, artifacts)
		return err
	}); err != nil {
		return Result{}, err
	}
	return res, nil
}

func (j *jobRun) prepareRuntime(ctx context.Context, artifacts string) error {
	cfg, job := j.x.Config, j.job
	if strings.TrimSpace(cfg.Profile) == "" {
		// The original's runtime plan refuses it before touching Incus.
		return errors.New("build remote Incus runtime plan: runtime spec field `incus.profile` must be non-empty")
	}
	if job.Writable {
		return errors.New("remote Linux VM backend `incus` does not support writable workspace jobs")
	}
	alias := job.Image.Alias
	img, err := j.x.image(ctx, job)
	if err != nil {
		return err
	}
	fp := img.Fingerprint
	j.exe.IncusImage = &model.RemoteLinuxVMImageRecord{GuestRole: job.Image.Recorded, Project: cfg.Project, Alias: alias, Fingerprint: &fp}

	itype, err := j.instanceType(ctx, alias, img.Type)
	if err != nil {
		return err
	}
	// A job with secrets never gets a mounted state directory (Config.
	// StateDirMount), so it takes no pool instance that has one.
	mounted := stateDirMounts(j.x.Backend, cfg, itype)
	if j.x.Pool != nil && len(job.StagedPayloads) == 0 && !(mounted && len(job.SecretEnv) > 0) {
		if taken, ok := j.x.Pool.TakeWait(ctx, alias, itype, fp); ok {
			j.pre, j.stateDir = taken.pre, taken.stateDir
			return j.takePooled(ctx, taken.Name, artifacts, itype, alias, fp)
		}
	}
	spec, err := instanceSpec(ctx, j.x.Backend, cfg, j.name, itype, alias)
	if err != nil {
		return err
	}
	// Incus enforces a root disk's size on btrfs, zfs and lvm pools. A dir
	// pool takes the size and does not enforce it (checked by hand: `incus
	// launch … -d root,size=2GiB` on a dir pool starts, and the guest's df
	// shows the host's disk), so say so where it matters.
	if spec.RootDisk.Driver == "dir" {
		j.hostf("storage pool %s (dir) cannot enforce the guest disk size %s", spec.RootDisk.Pool, cfg.RootDiskSize)
	}
	// Stale instance of the same name: delete first, ignoring errors.
	if err := j.x.Backend.DeleteInstance(ctx, j.name); err != nil {
		j.log.Warn("delete stale instance", zap.Error(err))
	}
	if err := resetDir(artifacts); err != nil {
		return fmt.Errorf("reset artifacts: %w", err)
	}
	for k, v := range j.jobKeys() {
		spec.Config[k] = v
	}
	disks := j.snapshotDisks()
	payloads, err := j.payloadDisks(ctx)
	if err != nil {
		return err
	}
	disks = append(disks, payloads...)
	api := cfg.Transfer.api()
	if !api {
		spec.Disks = disks
	}
	if mounted && len(job.SecretEnv) == 0 {
		j.stateDir = filepath.Join(job.JobDir, "guest-state")
		d, err := makeStateDir(j.stateDir)
		if err != nil {
			return err
		}
		spec.Disks = append(spec.Disks, d)
	}
	j.created = true // from here on, cleanup runs whatever happens
	if err := j.x.Backend.CreateInstance(ctx, spec); err != nil {
		return fmt.Errorf("create %s instance %q from image `%s`: %w", itype, j.name, alias, err)
	}
	j.hostf("instance %s (%s) started from %s@%s", j.name, itype, alias, fp)
	if err := j.waitReady(ctx); err != nil {
		return err
	}
	if j.stateDir != "" {
		return ownStateDir(ctx, j.x.Backend, j.name, j.stateDir)
	}
	if !api {
		return nil
	}
	return j.pushDisks(ctx, disks)
}

// snapshotDisks is the job's snapshot shown read-only at
// GuestSnapshotPath, when it has one.
func (j *jobRun) snapshotDisks() []Disk {
	if j.job.SnapshotDir == "" {
		return nil
	}
	return []Disk{{Name: model.SnapshotDeviceName(j.job.SnapshotDir, GuestSnapshotPath),
		Source: j.job.SnapshotDir, Path: GuestSnapshotPath, ReadOnly: true}}
}

// pushDisks copies what the disks show into the instance (TransferAPI).
func (j *jobRun) pushDisks(ctx context.Context, disks []Disk) error {
	if len(disks) == 0 {
		return nil
	}
	if err := pushDisks(ctx, j.x.Backend, j.name, disks); err != nil {
		return err
	}
	j.hostf("copied %d host paths into %s through the Incus API (one archive)", len(disks), j.name)
	return nil
}

// jobKeys are the config keys that make an instance this job's.
func (j *jobRun) jobKeys() map[string]string {
	keys := map[string]string{ConfigRunID: j.job.RunID, ConfigJobID: j.job.ID, ConfigOwner: j.x.Config.Owner}
	if r := j.job.Image.Recorded; r != nil {
		keys[ConfigGuestRole] = string(*r)
	}
	return keys
}

// takePooled makes a ready pool instance the job's: its workspace filled
// on the host, its keys the job's (one Incus call), nothing created.
func (j *jobRun) takePooled(ctx context.Context, name, artifacts string, itype model.InstanceType, alias, fp string) error {
	j.name, j.pooled, j.created = name, true, true // from here on, cleanup runs whatever happens
	j.log = j.log.With(zap.String("pool_instance", name))
	if err := resetDir(artifacts); err != nil {
		return fmt.Errorf("reset artifacts: %w", err)
	}
	if j.x.Config.Transfer.api() {
		if err := j.pushDisks(ctx, j.snapshotDisks()); err != nil {
			return fmt.Errorf("fill the workspace of pool instance %q: %w", name, err)
		}
	} else if err := j.x.Pool.fillWorkspace(ctx, name, j.job.SnapshotDir); err != nil {
		return fmt.Errorf("fill the workspace of pool instance %q: %w", name, err)
	}
	// The job's keys go on the instance while the runner starts: until
	// then it carries this process's pool owner, which no reaper touches.
	keys := j.jobKeys()
	keys[ConfigPool] = "" // unset: no longer the pool's
	j.keysSet = make(chan error, 1)
	go func() {
		// Detached, as the teardown is, and bounded alike: Execute waits for it.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), j.x.cleanupTimeout())
		defer cancel()
		err := j.x.Backend.SetInstanceConfig(sctx, name, keys)
		if err != nil {
			err = fmt.Errorf("take pool instance %q: %w", name, err)
		}
		j.keysSet <- err
	}()
	j.hostf("instance %s (%s) taken from the warm pool, started from %s@%s", name, itype, alias, fp)
	return nil
}

// waitReady polls `true` in the guest with a growing interval (no fixed
// sleep): containers answer at once, VMs when their agent is up.
func (j *jobRun) waitReady(ctx context.Context) error {
	return waitReady(ctx, j.x.Backend, j.x.Config, j.name)
}

// waitReady polls `true` in instance name until it answers.
func waitReady(ctx context.Context, be Backend, cfg Config, name string) error {
	deadline := time.Now().Add(readyTimeout(cfg))
	pause := backoff.Backoff{First: 20 * time.Millisecond, Max: time.Second}
	for {
		code, err := be.Exec(ctx, name, ExecRequest{Command: []string{"true"}}, io.Discard, io.Discard)
		if err == nil && code == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			//lint:ignore ST1005 the original's exact message (docs/CONTRACTS.md, "Exact messages")
			return errors.New("Incus instance did not become ready in time")
		}
		if err := pause.Wait(ctx); err != nil {
			return err
		}
	}
}

// waitForRunner runs the guest runner with the job's timeout, following its
// output live into host.log and artifacts/guest.log.
func (j *jobRun) waitForRunner(ctx context.Context, artifacts string) (code int, timedOut bool, err error) {
	guestLog, err := os.OpenFile(filepath.Join(artifacts, "guest.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, false, err
	}
	defer guestLog.Close()
	host := j.job.HostLog
	if host == nil {
		host = io.Discard
	}
	hostCap := j.x.Config.HostLogRunnerBytes
	if hostCap == 0 {
		hostCap = DefaultHostLogRunnerBytes
	}
	j.output = newRunnerOutput(host, guestLog, hostCap, j.x.Config.MaxOutputBytes)
	stdoutLines := j.output.writer("[runner:stdout] ")
	stderrLines := j.output.writer("[runner:stderr] ")
	// Masked before being cut into lines: a value split across two reads
	// of the stream, or across a 64 KiB line break, is masked too.
	stdout, stderr := j.job.Mask.Writer(stdoutLines), j.job.Mask.Writer(stderrLines)
	tctx, cancel := context.WithTimeout(ctx, time.Duration(j.job.TimeoutSecs)*time.Second)
	defer cancel()
	if j.pre != nil {
		// The runner runs already and has the request: attach to its output.
		j.pre.stdout.attach(stdout)
		j.pre.stderr.attach(stderr)
		var r execResult
		select {
		case r = <-j.pre.done:
		case <-tctx.Done():
			j.pre.cancel() // SIGTERM, then SIGKILL after the grace
			r = <-j.pre.done
		case <-j.output.over:
			j.pre.cancel()
			r = <-j.pre.done
		}
		code, err = r.code, r.err
	} else {
		// The exec ends with the job's timeout, or when the output goes
		// past its limit.
		ectx, stop := context.WithCancel(tctx)
		done := make(chan struct{})
		go func() {
			select {
			case <-j.output.over:
				stop()
			case <-done:
			}
		}()
		code, err = j.x.Backend.Exec(ectx, j.name,
			ExecRequest{Command: []string{j.x.Config.RunnerPath, j.requestPath()}, Cwd: "/"}, stdout, stderr)
		close(done)
		stop()
	}
	_ = mask.Flush(stdout) // errors are the raw log's, seen by its close
	_ = mask.Flush(stderr)
	stdoutLines.flush()
	stderrLines.flush()
	if j.output.exceeded() {
		return 0, false, nil // execute tells it (outputOverResult)
	}
	// Past the job's deadline it is a timeout, even when the guest's own
	// `timeout` (the same N seconds, started a little later) won the race
	// and the runner exited 124 just before we noticed.
	if tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("run guest runner in %q: %w", j.name, err)
	}
	return code, false, nil
}

// requestPath is where the guest sees its request: a pool instance's is
// in its request directory, another's was pushed through Incus.
func (j *jobRun) requestPath() string {
	if j.pooled {
		return PoolRequestGuestPath
	}
	return GuestRequestPath
}

// smallArtifactLimit caps each of the guest's small artifacts
// (events.jsonl, status.json, result.json): a hostile guest cannot make
// the host read gigabytes.
const smallArtifactLimit = 1 << 20

// collect copies the guest's artifacts out; result.json is authoritative.
func (j *jobRun) collect(ctx context.Context, artifacts string) (Result, error) {
	if j.stateDir != "" {
		return j.collectMounted(artifacts)
	}
	if m, ok := j.x.Backend.(ArchiveMover); ok {
		res, err := j.collectArchive(ctx, m, artifacts)
		if !errors.Is(err, ErrNoArchiver) {
			return res, err
		}
		j.hostf("could not collect the artifacts as one archive, pulling them one by one: %v", err)
	}
	if err := j.collectGuestLog(ctx, artifacts); err != nil {
		return Result{}, err
	}
	var result []byte
	for _, name := range []string{"events.jsonl", "status.json", "result.json"} {
		guestPath := GuestDir + "/" + name
		var buf bytes.Buffer
		if _, err := j.x.Backend.PullFile(ctx, j.name, guestPath, &buf, smallArtifactLimit); err != nil {
			if name == "result.json" {
				return Result{}, fmt.Errorf("read Incus guest path `%s` from %s failed with %v", guestPath, j.x.Config.Host, err)
			}
			j.hostf("could not collect %s: %v", guestPath, err)
			continue
		}
		if err := os.WriteFile(filepath.Join(artifacts, name), j.job.Mask.Bytes(buf.Bytes()), 0o644); err != nil {
			return Result{}, fmt.Errorf("save artifact %s: %w", name, err)
		}
		if name == "result.json" {
			result = buf.Bytes()
		}
	}
	return j.terminal(result)
}

// collectArchive collects the artifacts as one archive: a missing or
// failed file is told as a pulled one is (collect), the archive's
// failure standing for each file it did not bring.
func (j *jobRun) collectArchive(ctx context.Context, m ArchiveMover, artifacts string) (Result, error) {
	got, aerr := j.pullArtifacts(ctx, m, artifacts)
	if errors.Is(aerr, ErrNoArchiver) {
		return Result{}, aerr
	}
	var hostErr *hostWriteError
	if errors.As(aerr, &hostErr) {
		return Result{}, hostErr.err
	}
	missing := func(guestPath string) error {
		if aerr != nil {
			return aerr
		}
		return fmt.Errorf("%s: %w", guestPath, ErrNotFound)
	}
	if !got.guestLog {
		j.hostf("could not collect %s: %v", GuestDir+"/logs/guest.log", missing(GuestDir+"/logs/guest.log"))
	}
	for _, name := range []string{"events.jsonl", "status.json", "result.json"} {
		guestPath := GuestDir + "/" + name
		b, ok := got.small[name]
		if !ok {
			if name == "result.json" {
				return Result{}, fmt.Errorf("read Incus guest path `%s` from %s failed with %v", guestPath, j.x.Config.Host, missing(guestPath))
			}
			j.hostf("could not collect %s: %v", guestPath, missing(guestPath))
			continue
		}
		if err := os.WriteFile(filepath.Join(artifacts, name), j.job.Mask.Bytes(b), 0o644); err != nil {
			return Result{}, fmt.Errorf("save artifact %s: %w", name, err)
		}
	}
	return j.terminal(got.small["result.json"])
}

// terminal reads the guest's result.json, which is authoritative.
func (j *jobRun) terminal(result []byte) (Result, error) {
	var tr model.TerminalResult
	if err := json.Unmarshal(result, &tr); err != nil {
		return Result{}, fmt.Errorf("load guest terminal result: %w", err)
	}
	return Result{Status: tr.Status.RunStatus(), ExitCode: tr.ExitCode, Message: j.job.Mask.String(tr.Message)}, nil
}

// collectGuestLog streams the guest's own log, which may be gigabytes, to
// artifacts/guest.log.tmp and renames it over artifacts/guest.log (the
// output followed live) only once it is complete. A guest log that cannot
// be pulled leaves the live one and a host.log line; only a failure to
// write on the host is an error.
func (j *jobRun) collectGuestLog(ctx context.Context, artifacts string) error {
	const guestPath = GuestDir + "/logs/guest.log"
	f, err := atomicfile.Create(filepath.Join(artifacts, "guest.log"), 0o644)
	if err != nil {
		return fmt.Errorf("save artifact guest.log: %w", err)
	}
	defer f.Abort()
	w := &fileWriter{f: f.File}
	mw := j.job.Mask.Writer(w)
	_, err = j.x.Backend.PullFile(ctx, j.name, guestPath, mw, 0)
	_ = mask.Flush(mw) // a write error stays in w.err
	switch {
	case w.err != nil:
		return fmt.Errorf("save artifact guest.log: %w", w.err)
	case err != nil:
		j.hostf("could not collect %s: %v", guestPath, err)
		return nil
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("save artifact guest.log: %w", err)
	}
	return nil
}

// cleanup deletes the instance on a detached context with its own timeout.
func (j *jobRun) cleanup(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), j.x.cleanupTimeout())
	defer cancel()
	return j.delete(dctx)
}

// delete force-stops and deletes the job's instance; a missing one is done.
func (j *jobRun) delete(ctx context.Context) error {
	if err := deleteRunning(ctx, j.x.Backend, j.name); err != nil {
		j.log.Error("delete instance", zap.Error(err))
		return fmt.Errorf("delete instance %q: %w", j.name, err)
	}
	if j.stateDir != "" && !j.pooled {
		if err := os.RemoveAll(j.stateDir); err != nil {
			j.log.Warn("remove the instance's state directory", zap.Error(err))
		}
	}
	if j.pooled {
		if err := j.x.Pool.Release(j.name); err != nil {
			j.log.Warn("remove the pool instance's host directories", zap.Error(err))
		}
	}
	return nil
}

func (x *RemoteLinuxVM) cleanupTimeout() time.Duration { return cleanupTimeout(x.Config) }

func resetDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}

func (x *RemoteLinuxVM) now() time.Time {
	if x.Now != nil {
		return x.Now()
	}
	return time.Now()
}

func (x *RemoteLinuxVM) logger() *zap.Logger {
	if x.Log != nil {
		return x.Log
	}
	return zap.NewNop()
}
