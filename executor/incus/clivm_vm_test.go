package incus

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

// The VM path request by request (docs/INCUS.md, "Virtual machines"): a
// staged job whose image is a virtual-machine image, run by the executor
// over this package's client against the fake server, and every request
// with its body compared with a golden file.

var updateVMGolden = flag.Bool("update-vm-golden", false, "rewrite testdata/fixtures/incus/vm-*.golden")

// vmRecorder keeps each request the routes it wraps see, with its body.
type vmRecorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *vmRecorder) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		entry := req.Method + " " + req.URL.EscapedPath()
		if req.URL.RawQuery != "" {
			entry += "?" + req.URL.RawQuery
		}
		if t := req.Header.Get("X-Incus-Type"); t != "" {
			entry += fmt.Sprintf(" [type %s, uid %s, gid %s, mode %s]", t, req.Header.Get("X-Incus-Uid"), req.Header.Get("X-Incus-Gid"), req.Header.Get("X-Incus-Mode"))
		}
		if len(body) > 0 {
			var v any
			if json.Unmarshal(body, &v) == nil {
				body, _ = json.MarshalIndent(v, "  ", "  ") // map keys sorted
			}
			entry += "\n  " + string(body)
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, entry)
		r.mu.Unlock()
		h(w, req)
	}
}

func (r *vmRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.reqs, "\n") + "\n"
}

// reProbe is the VM probe's name, which has a time in it.
var reProbe = regexp.MustCompile(`jci-vm-probe-\d+`)

func errorJSON(code int, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"type":"error","status":"","status_code":0,"operation":"","error_code":%d,"error":%q,"metadata":null}`, code, msg)
	}
}

// vmStore is a staged job's two outputs in a store of the test's own.
type vmStore struct{}

func (s vmStore) Closure(_ context.Context, paths []string, _ io.Writer) ([]string, error) {
	return slices.Clone(paths), nil
}

func TestVMLaunchSequence(t *testing.T) {
	const (
		alias = "pikaci/dev"
		fp    = "3b1c5e7f9a0d2c4e6f8a1b3d5c7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e"
	)
	tests := []struct {
		name   string
		golden string
		driver string // the server's drivers
		probe  string // the refusal of the VM probe, when the server has no qemu
		itype  model.InstanceType
	}{
		// The server runs VMs: created as a virtual machine, the agent
		// waited for, the payloads and the snapshot as virtiofs disks.
		{name: "staged job on a VM image", golden: "vm-launch-staged.golden", driver: "lxc | qemu", itype: model.InstanceAuto},
		// No KVM: the runner prepare node asks once (a create the server
		// must refuse) and nothing is created.
		{name: "no KVM", golden: "vm-refused-no-kvm.golden", driver: "lxc", itype: model.InstanceAuto,
			probe: `Failed creating instance record: Instance type "virtual-machine" is not supported on this server: KVM support is missing (no /dev/kvm)`},
		{name: "no vhost_vsock", golden: "vm-refused-no-vsock.golden", driver: "lxc", itype: model.InstanceVirtualMachine,
			probe: `Failed creating instance record: Instance type "virtual-machine" is not supported on this server: vhost_vsock kernel module not loaded`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			rec := &vmRecorder{}
			tmp, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			store := filepath.Join(tmp, "store")
			job := vmStagedJob(t, tmp, store)
			name := model.InstanceName(job.RunID, job.ID)
			inst := "/1.0/instances/" + name

			f.handle("GET", "/1.0", rec.wrap(syncJSON(fmt.Sprintf(`{"api_version":"1.0","auth":"trusted","environment":{"driver":%q,"server_version":"6.0.4"}}`, tc.driver))))
			f.handle("GET", "/1.0/images/aliases/"+alias, rec.wrap(syncJSON(fmt.Sprintf(`{"name":%q,"description":"","target":%q,"type":"virtual-machine"}`, alias, fp))))
			f.handle("GET", "/1.0/profiles/default", rec.wrap(syncJSON(`{"name":"default","devices":{"root":{"type":"disk","path":"/","pool":"default"}}}`)))
			f.handle("GET", "/1.0/profiles/pika-agent-dev", rec.wrap(syncJSON(`{"name":"pika-agent-dev","devices":{}}`)))
			f.handle("GET", "/1.0/storage-pools/default", rec.wrap(syncJSON(`{"name":"default","driver":"btrfs"}`)))
			var mu sync.Mutex
			created, execs := false, 0
			f.handle("POST", "/1.0/instances", rec.wrap(func(w http.ResponseWriter, r *http.Request) {
				if tc.probe != "" {
					errorJSON(http.StatusBadRequest, tc.probe)(w, r)
					return
				}
				mu.Lock()
				created = true
				mu.Unlock()
				w.WriteHeader(http.StatusAccepted)
				w.Write(fixture(t, "async_create.json"))
			}))
			f.reply("GET", opPath+"/wait", 200, "operation_success.json")
			f.handle("DELETE", inst, rec.wrap(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				c := created
				mu.Unlock()
				if !c { // the stale delete before the create
					errorJSON(http.StatusNotFound, "Instance not found")(w, r)
					return
				}
				w.WriteHeader(http.StatusAccepted)
				w.Write(fixture(t, "async_create.json"))
			}))
			f.handle("GET", inst, rec.wrap(errorJSON(http.StatusNotFound, "Instance not found")))
			f.handle("POST", inst+"/files", rec.wrap(syncJSON(`{}`)))
			x := newFakeExec(t, f, func(c *fakeCmd) { c.Exit(0) })
			f.handle("POST", inst+"/exec", rec.wrap(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				execs++
				n := execs
				mu.Unlock()
				switch n {
				case 1: // the VM's agent is not up yet
					errorJSON(http.StatusBadRequest, "VM agent isn't currently running")(w, r)
				case 2: // `true` through the agent: ready
					x.post(w, r)
				default: // the runner: the sequence ends here
					errorJSON(http.StatusInternalServerError, "the fake server ends the test here")(w, r)
				}
			}))

			cfg := executor.DefaultConfig()
			cfg.Project, cfg.Owner, cfg.InstanceType = "p", "vm-test", tc.itype
			cfg.GuestNetwork = "" // the profiles' NICs, as the original
			vm := &executor.RemoteLinuxVM{Backend: NewBackend(f.client()), Config: cfg, Store: vmStore{}, NixStoreDir: store}
			perr := vm.PrepareRunner(t.Context(), job)
			var eerr error
			outcome := fmt.Sprintf("-- prepare node: %v\n", perr)
			if perr == nil {
				_, eerr = vm.Execute(t.Context(), job)
				outcome += fmt.Sprintf("-- execute: %v\n", eerr)
			}
			// The snapshot's device name hashes its (temporary) source.
			got := strings.ReplaceAll(rec.String()+outcome, model.SnapshotDeviceName(job.SnapshotDir, executor.GuestSnapshotPath), "$SNAPSHOT_DEVICE")
			got = strings.ReplaceAll(strings.ReplaceAll(got, tmp, "$TMP"), name, "$INSTANCE")
			got = reProbe.ReplaceAllString(got, "jci-vm-probe-$$N")
			checkVMGolden(t, tc.golden, got)
			if tc.probe == "" && (perr != nil || eerr == nil || !strings.Contains(eerr.Error(), "the fake server ends the test here")) {
				t.Errorf("prepare node %v, execute %v; want the run to reach the runner", perr, eerr)
			}
			if tc.probe != "" && (perr == nil || created) {
				t.Errorf("prepare node %v, created %v; want a refusal and nothing created", perr, created)
			}
		})
	}
}

// vmStagedJob is a staged job with the original's two payloads (deps and
// build, each mounted whole) in a store under tmp.
func vmStagedJob(t *testing.T, tmp, store string) executor.Job {
	t.Helper()
	jobDir := filepath.Join(tmp, "runs", "20260319T010203Z-5ea9ed01", "jobs", "pika-actionlint")
	snap := filepath.Join(tmp, "runs", "20260319T010203Z-5ea9ed01", "snapshot")
	var payloads []executor.StagedPayload
	for i, role := range []string{"workspace-deps", "workspace-build"} {
		root := filepath.Join(store, strings.Repeat(string("db"[i]), 32)+"-pikaFollowup-"+role)
		manifest := fmt.Sprintf(`{"schema_version":1,"kind":"staged_linux_%s_v1","entrypoints":[],"asset_roots":[],"mounts":[{"name":"%s_root","relative_path":".","guest_path":"/staged/linux-rust/%s","read_only":true}]}`,
			strings.ReplaceAll(role, "-", "_"), strings.ReplaceAll(role, "-", "_"), role)
		for _, d := range []string{filepath.Join(root, "share/pikaci"), filepath.Join(jobDir, "staged-linux-rust"), snap} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(root, model.PayloadManifestRelativePath), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(jobDir, "staged-linux-rust", role)
		if err := os.Symlink(root, link); err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, executor.StagedPayload{Role: role, MountPath: link})
	}
	role := model.RolePikaciRunner
	return executor.Job{RunID: "20260319T010203Z-5ea9ed01", ID: "pika-actionlint", Description: "actionlint", TimeoutSecs: 600,
		Command:     model.Staged("/staged/linux-rust/workspace-build/bin/run-pika-actionlint"),
		Runtime:     model.IncusRuntimeFor(role),
		Image:       model.IncusImage{Role: role, Alias: "pikaci/dev", Recorded: &role},
		SnapshotDir: snap, JobDir: jobDir, StagedPayloads: payloads}
}

func checkVMGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "fixtures", "incus", name)
	if *updateVMGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestVMLaunchSequence -update-vm-golden writes it)", err)
	}
	if got != string(want) {
		t.Errorf("requests differ from %s\n--- got\n%s--- want\n%s", path, got, want)
	}
}
