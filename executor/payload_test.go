package executor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/model"
)

// stagedOutput makes a fake realized output with a manifest and returns
// the job's symlink to it.
func stagedOutput(t *testing.T, jobDir, role, manifest string) (link, root string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "store-"+role)
	if manifest != "" {
		if err := os.MkdirAll(filepath.Join(root, "share/pikaci"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, model.PayloadManifestRelativePath), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	link = filepath.Join(jobDir, "staged-linux-rust", role)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	return link, root
}

const buildManifest = `{"schema_version":1,"kind":"staged_linux_workspace_build_v1","entrypoints":[],"asset_roots":[],"mounts":[{"name":"workspace_build_root","relative_path":".","guest_path":"/staged/linux-rust/workspace-build","read_only":true}]}`

func TestStagedPayloadDisks(t *testing.T) {
	for _, tc := range []struct {
		name, deps, build string
		wantErr           string
		wantDisks         []string // name=source-suffix:path:ro
	}{
		{name: "deps and build", build: buildManifest,
			deps: `{"schema_version":1,"kind":"staged_linux_workspace_deps_v1","mounts":[{"name":"workspace_deps_root","relative_path":"lib","guest_path":"/staged/linux-rust/workspace-deps","read_only":true}]}`,
			wantDisks: []string{
				"pk-staged-l-abd7f13d=store-workspace-deps/lib:/staged/linux-rust/workspace-deps:true",
				"pk-staged-l-47d99971=store-workspace-build:/staged/linux-rust/workspace-build:true",
				"pk-nix-store=/nix/store:/nix/store:true",
			}},
		{name: "missing manifest", build: buildManifest, deps: "", wantErr: "missing payload manifest for staged output "},
		{name: "escaping mount", build: buildManifest,
			deps:    `{"schema_version":1,"kind":"k","mounts":[{"name":"up","relative_path":"../../etc","guest_path":"/x","read_only":true}]}`,
			wantErr: "relative_path must stay within the payload root"},
		{name: "relative guest path", build: buildManifest,
			deps:    `{"schema_version":1,"kind":"k","mounts":[{"name":"rel","relative_path":".","guest_path":"staged","read_only":true}]}`,
			wantErr: "guest_path must be an absolute normalized path"},
		{name: "bad json", build: buildManifest, deps: `{"kind":`, wantErr: "decode "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
			var log syncBuf
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
			job := newJob(t, &log)
			job.Command = model.Staged("/staged/linux-rust/workspace-build/bin/run-job")
			depsLink, _ := stagedOutput(t, job.JobDir, "workspace-deps", tc.deps)
			buildLink, _ := stagedOutput(t, job.JobDir, "workspace-build", tc.build)
			job.StagedPayloads = []StagedPayload{{Role: "workspace-deps", MountPath: depsLink}, {Role: "workspace-build", MountPath: buildLink}}
			res, err := x.Execute(t.Context(), job)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if len(be.created) != 0 {
					t.Errorf("an instance was created: %+v", be.created)
				}
				return
			}
			if err != nil || res.Status != model.StatusPassed {
				t.Fatalf("res = %+v, err = %v", res, err)
			}
			var got []string
			for _, d := range be.created[0].Disks[1:] { // [0] is the snapshot
				src := d.Source
				if i := strings.Index(src, "store-"); i >= 0 {
					src = src[i:]
				}
				got = append(got, d.Name+"="+src+":"+d.Path+":"+map[bool]string{true: "true", false: "false"}[d.ReadOnly])
			}
			if strings.Join(got, "\n") != strings.Join(tc.wantDisks, "\n") {
				t.Errorf("disks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.wantDisks, "\n"))
			}
			req := string(be.files[GuestRequestPath])
			if !strings.Contains(req, `"command": "/staged/linux-rust/workspace-build/bin/run-job"`) {
				t.Errorf("guest request = %s", req)
			}
		})
	}
}

func TestPrepareRunner(t *testing.T) {
	be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}}
	x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig()}
	var log syncBuf
	job := newJob(t, &log)
	if err := x.PrepareRunner(t.Context(), job); err != nil {
		t.Errorf("PrepareRunner = %v", err)
	}
	job.Image.Alias = "missing/alias"
	if err := x.PrepareRunner(t.Context(), job); err == nil || !strings.HasPrefix(err.Error(), "Incus image `missing/alias` is not available in project `pika-managed-agents` on localhost; import it first") {
		t.Errorf("PrepareRunner with a missing image = %v", err)
	}
	x.Config.Project = ""
	if err := x.PrepareRunner(t.Context(), job); err == nil || err.Error() != "runtime spec field `project` must be non-empty" {
		t.Errorf("PrepareRunner with an empty project = %v", err)
	}
}
