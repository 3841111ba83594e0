package incus

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/model"
)

// transferStore is a fake Nix store of one staged output (its manifest
// mounts a directory of it at /staged/linux-rust/workspace-build) that
// refers to one more store path, and the closure Nix would give.
type transferStore struct {
	dir, link string
	closure   []string
}

func (s transferStore) Closure(_ context.Context, paths []string, _ io.Writer) ([]string, error) {
	return s.closure, nil
}

func newTransferStore(t *testing.T) transferStore {
	t.Helper()
	dir := mkdir755(t, t.TempDir(), "store")
	out := filepath.Join(dir, strings.Repeat("b", 32)+"-store-workspace-build")
	dep := filepath.Join(dir, strings.Repeat("c", 32)+"-dep")
	manifest := `{"schema_version":1,"kind":"staged_linux_workspace_build_v1","entrypoints":[],"asset_roots":[],` +
		`"mounts":[{"name":"workspace_build_root","relative_path":"tree","guest_path":"/staged/linux-rust/workspace-build","read_only":true}]}`
	write := func(p, data string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(out, model.PayloadManifestRelativePath), manifest, 0o444)
	write(filepath.Join(out, "tree/bin/wrapper"), "#!/bin/sh\nexec cat "+"/nix/store/"+filepath.Base(dep)+"/greeting\n", 0o555)
	write(filepath.Join(dep, "greeting"), "staged hello\n", 0o444)
	if err := os.Symlink("bin/wrapper", filepath.Join(out, "tree/run")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(mkdir755(t, t.TempDir(), "job"), "workspace-build")
	if err := os.Symlink(out, link); err != nil {
		t.Fatal(err)
	}
	return transferStore{dir: dir, link: link, closure: []string{dep, out}}
}

func mkdir755(t *testing.T, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// transferSnapshot is a snapshot with a nested file, a symlink and a
// read-only file.
func transferSnapshot(t *testing.T) string {
	t.Helper()
	snap := mkdir755(t, t.TempDir(), "snapshot")
	if err := os.MkdirAll(filepath.Join(snap, "src/deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string]string{"README": "# transfer tree\n", "src/deep/file.txt": "deep content\n"} {
		if err := os.WriteFile(filepath.Join(snap, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("src/deep/file.txt", filepath.Join(snap, "link")); err != nil {
		t.Fatal(err)
	}
	return snap
}

// volatileFields are the record's fields that differ run to run.
var volatileFields = regexp.MustCompile(`"(started_at|finished_at|duration_ms|fingerprint)":("[^"]*"|[0-9]+)`)

func maskedRecord(t *testing.T, exe any) string {
	t.Helper()
	b, err := json.Marshal(exe)
	if err != nil {
		t.Fatal(err)
	}
	return volatileFields.ReplaceAllString(string(b), `"$1":"*"`)
}

type transferRun struct {
	record, guest, hostLog string
	artifacts              []string
}

// TestIntegrationTransferAPIMatchesMounts runs the same jobs with files
// shown as host-path disks (mounts) and copied in through the API (api),
// a plain one, a staged one and one on the warm pool, and compares what
// the guest saw and the run records, volatile fields masked.
func TestIntegrationTransferAPIMatchesMounts(t *testing.T) {
	c := realClient(t)
	store := newTransferStore(t)
	snap := transferSnapshot(t)
	const look = `cd /workspace/snapshot && cat README src/deep/file.txt && readlink link && cat link && stat -c '%u:%g %a %n' README src src/deep/file.txt && id -u; `
	cases := []struct {
		name   string
		staged bool
		pool   bool
		cmd    string
	}{
		{name: "snapshot", cmd: look},
		{name: "staged", staged: true, cmd: look + `/staged/linux-rust/workspace-build/run && ls /nix/store | sort && readlink /staged/linux-rust/workspace-build/run && stat -c '%u:%g %a %n' /staged/linux-rust/workspace-build/bin/wrapper`},
		{name: "pool", pool: true, cmd: look},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runs := map[executor.Transfer]transferRun{}
			for _, mode := range []executor.Transfer{executor.TransferMounts, executor.TransferAPI} {
				runs[mode] = runTransferJob(t, c, mode, tc.staged, tc.pool, tc.cmd, snap, store)
			}
			m, a := runs[executor.TransferMounts], runs[executor.TransferAPI]
			t.Logf("api guest output:\n%s", a.guest)
			if m.record != a.record {
				t.Errorf("records differ:\nmounts %s\napi    %s", m.record, a.record)
			}
			if m.guest != a.guest {
				t.Errorf("the guest saw different things:\nmounts:\n%s\napi:\n%s", m.guest, a.guest)
			}
			if !slices.Equal(m.artifacts, a.artifacts) {
				t.Errorf("artifacts: mounts %q, api %q", m.artifacts, a.artifacts)
			}
			for _, want := range []string{"# transfer tree\ndeep content\nsrc/deep/file.txt\ndeep content\n", "65534:65534 644 README\n"} {
				if !strings.Contains(a.guest, want) {
					t.Errorf("api guest output lacks %q:\n%s", want, a.guest)
				}
			}
			if tc.staged && !strings.Contains(a.guest, "staged hello\n"+strings.Repeat("b", 32)) {
				t.Errorf("api guest output lacks the staged wrapper's greeting and the closure:\n%s", a.guest)
			}
			if tc.pool && !strings.Contains(a.hostLog, "taken from the warm pool") {
				t.Errorf("api job did not take a pool instance:\n%s", a.hostLog)
			}
			if !strings.Contains(a.hostLog, "through the Incus API (one archive)") {
				t.Errorf("api host log does not say it copied the files in:\n%s", a.hostLog)
			}
			if strings.Contains(m.hostLog, "through the Incus API") {
				t.Errorf("mounts host log says it copied files in:\n%s", m.hostLog)
			}
		})
	}
}

func runTransferJob(t *testing.T, c *Client, mode executor.Transfer, staged, pool bool, cmd, snap string, store transferStore) transferRun {
	t.Helper()
	role := model.RolePikaciRunner
	var hostLog lockedBuffer
	job := executor.Job{RunID: uniqueName("run-"), ID: "transfer", TimeoutSecs: 120, Command: model.Shell(cmd),
		Runtime: model.IncusRuntimeFor(role), Image: model.IncusImage{Role: role, Alias: itAlias, Recorded: &role},
		SnapshotDir: snap, JobDir: t.TempDir(), HostLog: &hostLog}
	if staged {
		job.StagedPayloads = []executor.StagedPayload{{Role: "workspace-build", MountPath: store.link}}
	}
	cfg := executor.DefaultConfig()
	cfg.Project, cfg.Profile, cfg.Owner, cfg.RootDiskSize, cfg.Transfer = itProject, itProfile, "jci-test", "3GiB", mode
	be := NewBackend(c)
	x := &executor.RemoteLinuxVM{Backend: be, Config: cfg, Store: store, NixStoreDir: store.dir, Log: zap.NewNop()}
	if pool {
		p := &executor.Pool{Backend: be, Config: cfg, Size: 1, Dir: t.TempDir(), Owner: "jci-test-pool", PreExec: true}
		ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
		done := make(chan struct{})
		go func() { defer close(done); p.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if err := p.Prewarm(t.Context(), itAlias); err != nil {
			t.Fatal(err)
		}
		for p.Stats().Ready == 0 {
			if p.Stats().Failed > 0 {
				t.Fatalf("pool: %+v", p.Stats())
			}
			time.Sleep(50 * time.Millisecond)
		}
		x.Pool = p
	}
	res, err := x.Execute(t.Context(), job)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("%s: Execute() = %+v, %v\nhost log:\n%.4000s", mode, res, err, hostLog.String())
	}
	if _, err := c.GetInstance(t.Context(), model.InstanceName(job.RunID, job.ID)); !IsNotFound(err) {
		t.Errorf("%s: instance left after the job: %v", mode, err)
	}
	artifacts := filepath.Join(job.JobDir, "artifacts")
	entries, err := os.ReadDir(artifacts)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	guestLog, err := os.ReadFile(filepath.Join(artifacts, "guest.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The guest log's own lines carry times: keep the command's output.
	var out bytes.Buffer
	for _, l := range strings.SplitAfter(string(guestLog), "\n") {
		if !strings.HasPrefix(l, "[pikaci]") {
			out.WriteString(l)
		}
	}
	return transferRun{record: maskedRecord(t, res.Execution), guest: out.String(), hostLog: hostLog.String(), artifacts: names}
}
