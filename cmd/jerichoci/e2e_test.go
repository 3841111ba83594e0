package main

// End-to-end tests of `jerichoci run` against the real incusd that
// scripts/incus-up installs and starts, with the runner images it imports.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"jerichoci/executor/incus"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files under testdata/fixtures")

const e2eProject = "pika-managed-agents"

// requireIncus returns a client of the local incusd. Without one the test
// fails in CI and is skipped elsewhere, saying why.
func requireIncus(t *testing.T) *incus.Client {
	t.Helper()
	testenv.Needs(t, "incusd with project "+e2eProject+" and image pikaci/dev (scripts/incus-up)")
	sock, err := incus.SocketPath(os.LookupEnv)
	if err == nil {
		var cl *incus.Client
		if cl, err = incus.NewUnix(sock, incus.WithProject(e2eProject)); err == nil {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if _, err = cl.GetImageAlias(ctx, "pikaci/dev"); err == nil {
				t.Cleanup(func() { cl.Close() })
				return cl
			}
			cl.Close()
		}
	}
	msg := "needs incusd with project " + e2eProject + " and image pikaci/dev (run scripts/incus-up): " + err.Error()
	testenv.Missing(t, "%s", msg)
	return nil
}

// e2eOwner is the owner key of every instance these tests make; other
// packages' tests (the daemon's) may run at the same time with their own.
var e2eOwner = fmt.Sprintf("e2e-test-%d", os.Getpid())

// checkNoLeftovers fails when an instance made by these tests (it carries
// user.jerichoci.owner=e2eOwner) is still there.
func checkNoLeftovers(t *testing.T, cl *incus.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	insts, err := cl.ListInstances(ctx)
	if err != nil {
		t.Fatalf("list instances: %v", err)
	}
	for _, in := range insts {
		if in.Config["user.jerichoci.owner"] != e2eOwner {
			continue
		}
		t.Errorf("instance %s (run %s, job %s) left behind", in.Name, in.Config["user.jerichoci.run_id"], in.Config["user.jerichoci.job_id"])
		_ = cl.DeleteInstance(ctx, in.Name)
	}
}

type e2eRun struct {
	code           int
	stdout, stderr string
	rec            model.RunRecord
	runJSON        []byte
	stateRoot      string
	source         string
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// runLane runs `jerichoci run` in-process with the repository's demo catalog.
func runLane(t *testing.T, cl *incus.Client, env map[string]string, args ...string) e2eRun {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# e2e source tree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return runWith(t, cl, "../../jerichoci.lanes.json", src, t.TempDir(), env, args...)
}

var (
	reTime        = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00"`)
	reDuration    = regexp.MustCompile(`("duration_ms": )\d+`)
	rePrepare     = regexp.MustCompile(`("pre_execution_prepare_duration_ms": )(\d+|null)`)
	reRunID       = regexp.MustCompile(`\d{8}T\d{6}Z-[0-9a-f]{8}`)
	reFingerprint = regexp.MustCompile(`[0-9a-f]{64}`)
)

// normalise replaces what changes between runs (times, durations, ids,
// temp paths, fingerprints) and keeps everything else byte for byte, field
// order, nulls and the +00:00 of timestamps included.
func normalise(r e2eRun) []byte {
	b := reTime.ReplaceAll(r.runJSON, []byte(`"<time>"`))
	b = reDuration.ReplaceAll(b, []byte(`${1}0`))
	b = rePrepare.ReplaceAll(b, []byte(`${1}"<ms>"`))
	b = bytes.ReplaceAll(b, []byte(r.stateRoot), []byte("<state>"))
	b = bytes.ReplaceAll(b, []byte(r.source), []byte("<source>"))
	b = reRunID.ReplaceAll(b, []byte("<run_id>"))
	return reFingerprint.ReplaceAll(b, []byte("<fingerprint>"))
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "fixtures", "records", name)
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("run.json differs from %s (normalised; -update rewrites it):\n got: %s\nwant: %s", path, got, want)
	}
}

func jobByID(t *testing.T, rec model.RunRecord, id string) model.JobRecord {
	t.Helper()
	for _, j := range rec.Jobs {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("run %s has no job %s", rec.RunID, id)
	return model.JobRecord{}
}

func TestE2EDemoLanes(t *testing.T) {
	cl := requireIncus(t)
	tests := []struct {
		lane     string
		wantCode int
		wantRun  model.RunStatus
		check    func(t *testing.T, r e2eRun)
	}{
		{"demo-pass", exitOK, model.StatusPassed, func(t *testing.T, r e2eRun) {
			j := jobByID(t, r.rec, "hello")
			if *j.ExitCode != 0 || *j.Message != "test passed" {
				t.Errorf("job = %+v", j)
			}
			guest, _ := os.ReadFile(j.GuestLogPath)
			host, _ := os.ReadFile(j.HostLogPath)
			// The command ran as uid 1000 in the read-only snapshot.
			for _, want := range []string{"hello from uid 1000 in /workspace/snapshot", "# e2e source tree", "to-stderr"} {
				if !strings.Contains(string(guest), want) || !strings.Contains(string(host), want) {
					t.Errorf("logs lack %q:\nguest: %s\nhost: %s", want, guest, host)
				}
			}
			// The runner gives the command's stderr with its stdout, as the
			// original's does (docs/CONTRACTS.md, "Guest runner environment").
			if !strings.Contains(string(host), "[runner:stdout] to-stderr") {
				t.Errorf("host log does not show the command's stderr on the runner's stdout:\n%s", host)
			}
			for _, a := range []string{"result.json", "status.json", "events.jsonl"} {
				if _, err := os.Stat(filepath.Join(filepath.Dir(j.GuestLogPath), a)); err != nil {
					t.Errorf("artifact %s not collected: %v", a, err)
				}
			}
			if !strings.Contains(r.stdout, "PASSED 1 passed, ran") || !strings.Contains(r.stdout, "hello | [runner:stdout] hello from uid 1000") {
				t.Errorf("live output:\n%s", r.stdout)
			}
		}},
		{"demo-fail", exitFailed, model.StatusFailed, func(t *testing.T, r e2eRun) {
			j := jobByID(t, r.rec, "exit-3")
			if j.ExitCode == nil || *j.ExitCode != 3 || *j.Message != "test command exited with 3" {
				t.Errorf("job = %+v", j)
			}
		}},
		{"demo-timeout", exitFailed, model.StatusFailed, func(t *testing.T, r e2eRun) {
			j := jobByID(t, r.rec, "sleep")
			if j.ExitCode != nil || *j.Message != "timed out after 3s" {
				t.Errorf("job = %+v, message %q", j, *j.Message)
			}
			host, _ := os.ReadFile(j.HostLogPath)
			if !strings.Contains(string(host), "[pikaci] timeout after 3s, killing remote Linux VM backend process") {
				t.Errorf("host log:\n%s", host)
			}
		}},
		{"demo-failfast", exitFailed, model.StatusFailed, func(t *testing.T, r e2eRun) {
			if s := jobByID(t, r.rec, "step-1").Status; s != model.StatusPassed {
				t.Errorf("step-1 %s", s)
			}
			if j := jobByID(t, r.rec, "step-2"); j.Status != model.StatusFailed || *j.ExitCode != 1 {
				t.Errorf("step-2 = %+v", j)
			}
			j := jobByID(t, r.rec, "step-3")
			if j.Status != model.StatusSkipped || *j.Message != "not run because an earlier execute node failed" || j.RemoteLinuxVMExecution != nil {
				t.Errorf("step-3 = %+v", j)
			}
			if !strings.Contains(r.stdout, "FAILED 1 passed 1 failed 1 skipped") {
				t.Errorf("summary:\n%s", r.stdout)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.lane, func(t *testing.T) {
			r := runLane(t, cl, nil, tc.lane)
			if r.code != tc.wantCode || r.rec.Status != tc.wantRun {
				t.Fatalf("exit %d status %s, want %d %s\nstdout:\n%s\nstderr:\n%s", r.code, r.rec.Status, tc.wantCode, tc.wantRun, r.stdout, r.stderr)
			}
			tc.check(t, r)
			checkGolden(t, "e2e-"+tc.lane+".golden.json", normalise(r))
		})
	}
}

func TestE2EGuestRoleAndAlias(t *testing.T) {
	cl := requireIncus(t)
	// A custom alias pointing at the runner image, made for this test.
	a, err := cl.GetImageAlias(t.Context(), "pikaci/dev")
	if err != nil {
		t.Fatal(err)
	}
	// Its own name: another test suite on this incusd makes (and deletes)
	// one at the same time.
	custom := fmt.Sprintf("jci-test/custom-pikaci-%d", time.Now().UnixNano()%1e9)
	if err := cl.CreateImageAlias(t.Context(), custom, a.Target, "jerichoci e2e test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.DeleteImageAlias(context.WithoutCancel(t.Context()), custom) })

	image := func(t *testing.T, r e2eRun) *model.RemoteLinuxVMImageRecord {
		t.Helper()
		e := r.rec.Jobs[0].RemoteLinuxVMExecution
		if e == nil || e.IncusImage == nil {
			t.Fatalf("no image record: %+v\n%s", r.rec.Jobs[0], r.stdout)
		}
		return e.IncusImage
	}
	t.Run("env role override", func(t *testing.T) {
		r := runLane(t, cl, map[string]string{model.EnvGuestRole: " managed-openclaw "}, "demo-pass")
		img := image(t, r)
		if r.code != exitOK || img.GuestRole == nil || *img.GuestRole != model.RoleManagedOpenclaw || img.Alias != "pika-agent/dev" {
			t.Errorf("exit %d image %+v\n%s", r.code, img, r.stdout)
		}
		insts := string(r.runJSON)
		if !strings.Contains(insts, `"guest_role": "managed-openclaw"`) {
			t.Errorf("run.json lacks the role:\n%s", insts)
		}
	})
	t.Run("custom alias records no role", func(t *testing.T) {
		r := runLane(t, cl, map[string]string{model.EnvImageAlias: custom}, "demo-pass")
		img := image(t, r)
		if r.code != exitOK || img.GuestRole != nil || img.Alias != custom || *img.Fingerprint != a.Target {
			t.Errorf("exit %d image %+v", r.code, img)
		}
		if strings.Contains(string(r.runJSON), "guest_role") {
			t.Errorf("run.json has a guest_role for a custom alias:\n%s", r.runJSON)
		}
	})
	t.Run("invalid env role is a persisted failed run", func(t *testing.T) {
		r := runLane(t, cl, map[string]string{model.EnvGuestRole: "not-a-role"}, "demo-pass")
		want := "prepare node `prepare-hello-runner` failed before execute: PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE must be one of `managed-openclaw` or `pikaci-runner`, got \"not-a-role\""
		if r.code != exitFailed || r.rec.Status != model.StatusFailed || *r.rec.Jobs[0].Message != want {
			t.Errorf("exit %d record %+v", r.code, r.rec)
		}
		checkGolden(t, "e2e-invalid-env-role.golden.json", normalise(r))
	})
	t.Run("missing alias says which alias in which project", func(t *testing.T) {
		r := runLane(t, cl, map[string]string{model.EnvImageAlias: "jci-test/missing"}, "demo-pass")
		want := "Incus image `jci-test/missing` is not available in project `pika-managed-agents` on localhost"
		if r.code != exitUsage || r.rec.Status != model.StatusFailed || !strings.HasPrefix(*r.rec.Jobs[0].Message, "prepare node `prepare-hello-runner` failed before execute: "+want) {
			t.Errorf("exit %d message %q", r.code, *r.rec.Jobs[0].Message)
		}
	})
}

// TestE2EVirtualMachineRefused asks for a VM on a host that cannot run them
// (ours: no vhost_vsock, no VMX/SVM): the job fails with the server's reason
// and no instance is left. Where the host runs VMs there is nothing to refuse.
func TestE2EVirtualMachineRefused(t *testing.T) {
	cl := requireIncus(t)
	s, err := cl.Server(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Supports(incus.TypeVirtualMachine) {
		t.Skipf("this host runs virtual machines (driver %q): nothing to refuse", s.Environment.Driver)
	}
	r := runLane(t, cl, map[string]string{"JERICHOCI_INSTANCE_TYPE": "virtual-machine"}, "demo-pass")
	// The job's runner prepare node refuses it, before anything is created.
	const prefix = "prepare node `prepare-hello-runner` failed before execute: instance type `virtual-machine` needs a virtual machine, but the Incus server on localhost cannot run virtual machines: "
	msg := *r.rec.Jobs[0].Message
	if r.code != exitUsage || r.rec.Status != model.StatusFailed || !strings.HasPrefix(msg, prefix) || len(msg) < len(prefix)+10 {
		t.Errorf("exit %d, message %q; want %q and the server's reason", r.code, msg, prefix)
	}
}

// TestE2EReapsInstancesOfDeadRuns leaves an instance as a `jerichoci run`
// killed with -9 would (owner "<host>-<pid>", that pid gone) beside one of
// a live process and one without our keys: the next run deletes only the first.
func TestE2EReapsInstancesOfDeadRuns(t *testing.T) {
	cl := requireIncus(t)
	host, _ := os.Hostname()
	dead := 4194000
	for processAlive(dead) {
		dead--
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	mk := func(name string, config map[string]string) {
		t.Helper()
		err := cl.CreateInstance(t.Context(), incus.InstancesPost{Name: name, Type: incus.TypeContainer,
			Source: incus.InstanceSource{Type: "image", Alias: "pikaci/dev"}, Config: config})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.DeleteInstance(context.WithoutCancel(t.Context()), name) })
	}
	orphan, live, foreign := "jci-test-orphan-"+suffix, "jci-test-live-"+suffix, "jci-test-foreign-"+suffix
	mk(orphan, map[string]string{"user.jerichoci.owner": fmt.Sprintf("%s-%d", host, dead), "user.jerichoci.run_id": "r-dead", "user.jerichoci.job_id": "j"})
	mk(live, map[string]string{"user.jerichoci.owner": fmt.Sprintf("%s-%d", host, os.Getppid()), "user.jerichoci.run_id": "r-live"})
	mk(foreign, map[string]string{"user.other.owner": fmt.Sprintf("%s-%d", host, dead)})

	r := runLane(t, cl, nil, "demo-pass")
	if r.code != exitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	_, err := cl.GetInstance(t.Context(), orphan)
	if !incus.IsNotFound(err) {
		t.Errorf("orphan %s still there (err %v)", orphan, err)
	}
	if !strings.Contains(r.stderr, "deleted instance "+orphan+" left by an earlier run (r-dead, job j)") {
		// Any `jerichoci run` on this host reaps a dead run's instances:
		// another test suite's run, next to this one, may have been first.
		// Then this run must not have found it.
		if strings.Contains(r.stderr, orphan) {
			t.Errorf("stderr mentions the orphan without reporting its deletion:\n%s", r.stderr)
		}
		t.Logf("orphan %s was reaped by another run on this host first:\n%s", orphan, r.stderr)
	}
	for _, keep := range []string{live, foreign} {
		if _, err := cl.GetInstance(t.Context(), keep); err != nil {
			t.Errorf("%s was touched: %v", keep, err)
		}
	}
}
