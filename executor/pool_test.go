package executor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"jerichoci/model"
)

func newPool(t *testing.T, be *fakeBackend) *Pool {
	cfg := DefaultConfig()
	cfg.Fleet = "fleet-a"
	return &Pool{Backend: be, Config: cfg, Size: 1, Dir: t.TempDir(), Owner: "jerichoci-pool/d1"}
}

func TestPoolHandsAReadyInstanceToAJob(t *testing.T) {
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
	pool := newPool(t, be)
	pool.Want("pikaci/dev", model.InstanceContainer, "fp1")
	pool.fill(t.Context())
	if st := pool.Stats(); st.Ready != 1 || st.Created != 1 {
		t.Fatalf("stats after fill = %+v", st)
	}
	made := be.created[0]
	if made.Config[ConfigOwner] != "jerichoci-pool/d1" || made.Config[ConfigPool] != "pikaci/dev" || made.Config[ConfigFleet] != "fleet-a" ||
		made.Config["limits.cpu"] != "2" || made.Config["security.guestapi"] != "false" || len(made.Disks) != 2 ||
		made.Disks[0].Path != GuestSnapshotPath || made.Disks[1].Path != PoolRequestGuestDir || !made.Disks[0].ReadOnly || !made.Disks[1].ReadOnly {
		t.Errorf("pool instance spec = %+v", made)
	}

	var log syncBuf
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig(), Pool: pool}
	x.Config.Owner = "worker-1"
	job := newJob(t, &log)
	if err := os.WriteFile(filepath.Join(job.SnapshotDir, "README.md"), []byte("from the snapshot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The teardown is held so the workspace can be looked at.
	be.teardownGate = make(chan struct{})
	td := &Teardowns{}
	x.Teardowns = td
	res, err := x.Execute(t.Context(), job)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, log.String())
	}
	if len(be.created) != 1 {
		t.Errorf("the job created an instance of its own: %+v", be.created[1:])
	}
	name := made.Name
	sets := be.configSets[name]
	if len(sets) != 1 || sets[0][ConfigRunID] != job.RunID || sets[0][ConfigJobID] != job.ID || sets[0][ConfigOwner] != "worker-1" ||
		sets[0][ConfigGuestRole] != "pikaci-runner" || sets[0][ConfigPool] != "" {
		t.Errorf("config set on the taken instance = %+v", sets)
	}
	if got := strings.Join(be.runnerArgs, " "); got != DefaultRunnerPath+" "+PoolRequestGuestDir+"/guest-request.json" {
		t.Errorf("runner command = %s", got)
	}
	req, err := os.ReadFile(filepath.Join(pool.requestDir(name), "guest-request.json"))
	if err != nil || !strings.Contains(string(req), `"schema_version": 2`) {
		t.Errorf("request on the host = %s, %v", req, err)
	}
	if _, pushed := be.files[GuestRequestPath]; pushed {
		t.Errorf("the request was pushed through Incus too")
	}
	if b, err := os.ReadFile(filepath.Join(pool.workspaceDir(name), "README.md")); err != nil || string(b) != "from the snapshot\n" {
		t.Errorf("workspace README = %q, %v", b, err)
	}
	if !strings.Contains(log.String(), "taken from the warm pool") {
		t.Errorf("host.log:\n%s", log.String())
	}
	close(be.teardownGate)
	if err := td.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pool.Dir, name)); !os.IsNotExist(err) {
		t.Errorf("the pool instance's directories outlived it: %v", err)
	}
	if st := pool.Stats(); st.Taken != 1 || st.Ready != 0 {
		t.Errorf("stats after the job = %+v", st)
	}
}

func TestPoolMissesAndDrains(t *testing.T) {
	for _, tc := range []struct {
		name   string
		take   string // fingerprint the job's image has
		age    time.Duration
		wantOK bool
	}{
		{"same image", "fp1", 0, true},
		{"the alias moved", "fp2", 0, false},
		{"too old", "fp1", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}}
			pool := newPool(t, be)
			pool.Want("pikaci/dev", model.InstanceContainer, "fp1")
			pool.fill(t.Context())
			if tc.age > 0 {
				pool.mu.Lock()
				for _, l := range pool.idle {
					for _, w := range l {
						w.created = w.created.Add(-tc.age)
					}
				}
				pool.mu.Unlock()
			}
			taken, ok := pool.Take("pikaci/dev", model.InstanceContainer, tc.take)
			if ok != tc.wantOK {
				t.Fatalf("Take = %+v, %v; want ok %v", taken, ok, tc.wantOK)
			}
			if _, other := pool.Take("pikaci/dev", model.InstanceVirtualMachine, tc.take); other {
				t.Errorf("a container was handed out for a VM")
			}
			st := pool.Stats()
			if !tc.wantOK && (st.Drained != 1 || st.Missed != 2) {
				t.Errorf("stats = %+v, want the old instance drained", st)
			}
		})
	}
}

// A pool instance's workspace is the snapshot, hard-linked where it can
// be, with its modes and symlinks (internal/treecopy tests the rest).
func TestFillWorkspaceLinksTheSnapshot(t *testing.T) {
	pool := newPool(t, &fakeBackend{})
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b/f", filepath.Join(src, "a", "l")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(pool.workspaceDir("i1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := pool.fillWorkspace(t.Context(), "i1", src); err != nil {
		t.Fatal(err)
	}
	dst := pool.workspaceDir("i1")
	fi, err := os.Stat(filepath.Join(dst, "a", "b", "f"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("file: %v %v", fi, err)
	}
	if si, _ := os.Stat(filepath.Join(src, "a", "b", "f")); fi != nil && !os.SameFile(fi, si) {
		t.Error("file copied, want a hard link to the snapshot's")
	}
	di, _ := os.Stat(filepath.Join(dst, "a"))
	if di == nil || di.Mode().Perm() != 0o750 {
		t.Errorf("dir mode: %v", di)
	}
	if l, err := os.Readlink(filepath.Join(dst, "a", "l")); err != nil || l != "b/f" {
		t.Errorf("symlink = %q, %v", l, err)
	}
}

func TestPoolPreStartsTheRunner(t *testing.T) {
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
	pool := newPool(t, be)
	pool.PreExec = true
	be.runnerWait = func(ctx context.Context, instance string) error {
		for {
			if _, err := os.Stat(filepath.Join(pool.requestDir(instance), "guest-request.json")); err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	pool.Want("pikaci/dev", model.InstanceContainer, "fp1")
	pool.fill(t.Context())
	waitUntil(t, func() bool { be.mu.Lock(); defer be.mu.Unlock(); return be.runnerExecs == 1 })
	be.mu.Lock()
	got := strings.Join(be.runnerArgs, " ")
	be.mu.Unlock()
	if got != DefaultRunnerPath+" --wait-for-request "+PoolRequestGuestDir+"/guest-request.json" {
		t.Fatalf("pre-started runner = %q", got)
	}
	var log syncBuf
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig(), Pool: pool}
	res, err := x.Execute(t.Context(), newJob(t, &log))
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, log.String())
	}
	be.mu.Lock()
	execs := be.runnerExecs
	be.mu.Unlock()
	if execs != 1 {
		t.Errorf("%d runner execs, want the one started ahead", execs)
	}
	// What the runner printed before the job attached is not lost.
	if hl := log.String(); !strings.Contains(hl, "[runner:stdout] early\n") || !strings.Contains(hl, "[runner:stdout] line one\n") {
		t.Errorf("host log:\n%s", hl)
	}
}

func TestPoolStopsPreStartingARunnerThatCannotWait(t *testing.T) {
	// The fake runner ends at once, as a runner without --wait-for-request.
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
	pool := newPool(t, be)
	pool.PreExec = true
	pool.Want("pikaci/dev", model.InstanceContainer, "fp1")
	pool.fill(t.Context())
	waitUntil(t, func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		for _, l := range pool.idle {
			return len(l) == 1 && l[0].pre != nil && l[0].pre.ended()
		}
		return false
	})
	if _, ok := pool.Take("pikaci/dev", model.InstanceContainer, "fp1"); ok {
		t.Fatal("an instance whose runner had ended was handed out")
	}
	pool.mu.Lock()
	pre := pool.PreExec
	pool.mu.Unlock()
	if pre {
		t.Error("the pool still pre-starts runners")
	}
}

// waitUntil waits a bounded while for cond (never a timing assertion).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30s")
		}
		time.Sleep(time.Millisecond)
	}
}
