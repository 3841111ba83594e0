package executor

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"jerichoci/model"
)

// fakeStoreHash is a store path hash: 32 characters of Nix's base 32.
func fakeStoreHash(c byte) string { return strings.Repeat(string(c), 32) }

// stagedOutput makes a fake realized output with a manifest in the fake
// store dir and returns the job's symlink to it.
func stagedOutput(t *testing.T, store, jobDir, hash, role, manifest string) (link, root string) {
	t.Helper()
	root = filepath.Join(store, hash+"-store-"+role)
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

// fakeClosure is the closure of a fake store: what each root refers
// to, and an error to give.
type fakeClosure struct {
	refs      map[string][]string // root base name -> other paths of its closure
	omitRoots bool                // a closure without the paths asked of
	err       error
	asked     []string
}

func (f *fakeClosure) Closure(_ context.Context, paths []string, log io.Writer) ([]string, error) {
	f.asked = append(f.asked, paths...)
	if f.err != nil {
		return nil, f.err
	}
	out := slices.Clone(paths)
	if f.omitRoots {
		out = nil
	}
	for _, p := range paths {
		out = append(out, f.refs[filepath.Base(p)]...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

const depsManifest = `{"schema_version":1,"kind":"staged_linux_workspace_deps_v1","mounts":[{"name":"workspace_deps_root","relative_path":"lib","guest_path":"/staged/linux-rust/workspace-deps","read_only":true}]}`

func TestStagedPayloadDisks(t *testing.T) {
	deps, build, lib, other := fakeStoreHash('d')+"-store-workspace-deps", fakeStoreHash('b')+"-store-workspace-build", fakeStoreHash('l')+"-lib", fakeStoreHash('x')+"-other"
	for _, tc := range []struct {
		name, deps, build string
		refs              map[string][]string // closure: base name -> base names
		closureErr        error
		omitRoots         bool
		noStore           bool
		prepare           func(t *testing.T, store string) // more of the fake store
		wantErr           string
		wantDisks         []string // name=source-suffix:path:ro
	}{
		{name: "deps and build", build: buildManifest, deps: depsManifest,
			refs: map[string][]string{build: {deps, lib}},
			wantDisks: []string{
				"pk-staged-l-abd7f13d=store-workspace-deps/lib:/staged/linux-rust/workspace-deps:true",
				"pk-staged-l-47d99971=store-workspace-build:/staged/linux-rust/workspace-build:true",
				"pk-nix-" + fakeStoreHash('b') + "=store-workspace-build:/nix/store/" + build + ":true",
				"pk-nix-" + fakeStoreHash('d') + "=store-workspace-deps:/nix/store/" + deps + ":true",
				"pk-nix-" + fakeStoreHash('l') + "=" + lib + ":/nix/store/" + lib + ":true",
			}},
		{name: "symlink store path within the closure", build: buildManifest, deps: depsManifest,
			refs: map[string][]string{build: {lib, other}},
			prepare: func(t *testing.T, store string) {
				if err := os.Symlink(filepath.Join(store, lib), filepath.Join(store, other)); err != nil {
					t.Fatal(err)
				}
			},
			wantDisks: []string{
				"pk-staged-l-abd7f13d=store-workspace-deps/lib:/staged/linux-rust/workspace-deps:true",
				"pk-staged-l-47d99971=store-workspace-build:/staged/linux-rust/workspace-build:true",
				"pk-nix-" + fakeStoreHash('b') + "=store-workspace-build:/nix/store/" + build + ":true",
				"pk-nix-" + fakeStoreHash('d') + "=store-workspace-deps:/nix/store/" + deps + ":true",
				"pk-nix-" + fakeStoreHash('l') + "=" + lib + ":/nix/store/" + lib + ":true",
				"pk-nix-" + fakeStoreHash('x') + "=" + lib + ":/nix/store/" + other + ":true",
			}},
		{name: "symlink store path out of the closure", build: buildManifest, deps: depsManifest,
			refs: map[string][]string{build: {other}},
			prepare: func(t *testing.T, store string) {
				if err := os.Symlink(filepath.Join(store, lib), filepath.Join(store, other)); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "-other is a symlink to "},
		{name: "payload mount through a symlink out of the closure", build: buildManifest,
			deps: `{"schema_version":1,"kind":"k","mounts":[{"name":"up","relative_path":"lib/up","guest_path":"/x","read_only":true}]}`,
			prepare: func(t *testing.T, store string) {
				if err := os.Symlink(filepath.Join(store, lib), filepath.Join(store, deps, "lib", "up")); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "lib/up resolves to "},
		{name: "closure path outside the store", build: buildManifest, deps: depsManifest,
			refs: map[string][]string{build: {"../elsewhere"}}, wantErr: "which is not a store path directly under "},
		{name: "closure without the output", build: buildManifest, deps: depsManifest, omitRoots: true,
			refs: map[string][]string{build: {lib}}, wantErr: "lacks the output "},
		{name: "closure error", build: buildManifest, deps: depsManifest, closureErr: errors.New("daemon gone"), wantErr: "ask Nix for the closure of the staged outputs: daemon gone"},
		{name: "no store", build: buildManifest, deps: depsManifest, noStore: true, wantErr: "no Nix store to ask for their closure"},
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
			store, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(store, lib), 0o755); err != nil {
				t.Fatal(err)
			}
			fc := &fakeClosure{refs: map[string][]string{}, err: tc.closureErr, omitRoots: tc.omitRoots}
			for root, refs := range tc.refs {
				for _, r := range refs {
					fc.refs[root] = append(fc.refs[root], filepath.Join(store, r))
				}
			}
			x := &RemoteLinuxVM{Backend: be, Config: DefaultConfig(), Store: fc, NixStoreDir: store}
			if tc.noStore {
				x.Store = nil
			}
			job := newJob(t, &log)
			job.Command = model.Staged("/staged/linux-rust/workspace-build/bin/run-job")
			depsLink, _ := stagedOutput(t, store, job.JobDir, fakeStoreHash('d'), "workspace-deps", tc.deps)
			buildLink, _ := stagedOutput(t, store, job.JobDir, fakeStoreHash('b'), "workspace-build", tc.build)
			if tc.deps != "" {
				if err := os.MkdirAll(filepath.Join(store, deps, "lib"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.prepare != nil {
				tc.prepare(t, store)
			}
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
				src := strings.TrimPrefix(d.Source, store+"/")
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
			if want := []string{filepath.Join(store, deps), filepath.Join(store, build)}; !slices.Equal(fc.asked, want) {
				t.Errorf("closure asked of %q, want %q", fc.asked, want)
			}
			if !strings.Contains(log.String(), "[pikaci] the guest sees the Nix store closure of its staged outputs: ") {
				t.Errorf("host log lacks the closure line:\n%s", log.String())
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
