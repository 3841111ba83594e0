package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/model"
)

// fakeFlake is a FlakeBuilder whose packages are output directories made
// by the test.
type fakeFlake struct {
	names    []string
	namesErr error
	outputs  map[string]string // installable → output directory
	built    []string
}

func (f *fakeFlake) PackageNames(_ context.Context, flake, system string, _ io.Writer) ([]string, error) {
	return f.names, f.namesErr
}

func (f *fakeFlake) Build(_ context.Context, installable string, _ io.Writer) (string, error) {
	f.built = append(f.built, installable)
	out, ok := f.outputs[installable]
	if !ok {
		return "", errors.New("no such output")
	}
	return out, nil
}

// output makes a flake output directory with the named files.
func output(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuildFlake(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "flake.nix"), []byte("{ outputs = { self }: { }; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inst := func(attr string) string { return "path:" + src + "#packages.x86_64-linux." + attr }
	vm := output(t, "metadata.tar.xz", "disk.qcow2", "README.txt")
	ct := output(t, "metadata.tar.xz", "rootfs.tar.xz")
	sq := output(t, "metadata.tar.xz", "rootfs.squashfs")
	metaOnly := output(t, "metadata.tar.xz", "README.txt")
	tests := []struct {
		name     string
		role     model.IncusGuestRole
		dir      string
		names    []string
		namesErr error
		outputs  map[string]string
		attr     string // built; "" when an error is wanted
		vm       bool
		err      string // substring
	}{
		{name: "role attribute, VM", role: model.RolePikaciRunner, names: []string{"pikaci-incus-dev-image", "pikaci-runner-incus-image"},
			outputs: map[string]string{inst("pikaci-runner-incus-image"): vm}, attr: "pikaci-runner-incus-image", vm: true},
		{name: "legacy attribute, container", role: model.RoleManagedOpenclaw, names: []string{"pika-agent-incus-dev-image"},
			outputs: map[string]string{inst("pika-agent-incus-dev-image"): ct}, attr: "pika-agent-incus-dev-image"},
		{name: "squashfs container", role: model.RolePikaciRunner, names: []string{"pikaci-incus-dev-image"},
			outputs: map[string]string{inst("pikaci-incus-dev-image"): sq}, attr: "pikaci-incus-dev-image"},
		{name: "missing attribute", role: model.RolePikaciRunner, names: []string{"default", "pika-agent-incus-dev-image"},
			err: "build pikaci-runner image from flake " + src + ": no image package for the role: packages.x86_64-linux has neither pikaci-runner-incus-image nor the legacy pikaci-incus-dev-image (it has only default, pika-agent-incus-dev-image)"},
		{name: "no packages", role: model.RoleManagedOpenclaw,
			err: "packages.x86_64-linux has neither managed-openclaw-incus-image nor the legacy pika-agent-incus-dev-image (it has no packages)"},
		{name: "output without a disk", role: model.RolePikaciRunner, names: []string{"pikaci-runner-incus-image"},
			outputs: map[string]string{inst("pikaci-runner-incus-image"): metaOnly},
			err:     "packages.x86_64-linux.pikaci-runner-incus-image: output " + metaOnly + " holds README.txt, metadata.tar.xz (image artifact"},
		{name: "empty output", role: model.RolePikaciRunner, names: []string{"pikaci-runner-incus-image"},
			outputs: map[string]string{inst("pikaci-runner-incus-image"): t.TempDir()}, err: " holds nothing (image artifact"},
		{name: "eval fails", role: model.RolePikaciRunner, namesErr: errors.New("nix eval exited: exit status 1"),
			err: "build pikaci-runner image from flake " + src + ": nix eval exited: exit status 1"},
		{name: "build fails", role: model.RolePikaciRunner, names: []string{"pikaci-runner-incus-image"},
			err: "build pikaci-runner image from flake " + src + ": no such output"},
		{name: "no flake.nix", role: model.RolePikaciRunner, dir: t.TempDir(), err: "want a directory with flake.nix"},
		{name: "unknown role", role: "nope", err: "unsupported role: nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeFlake{names: tc.names, namesErr: tc.namesErr, outputs: tc.outputs}
			dir := src
			if tc.dir != "" {
				dir = tc.dir
			}
			img, err := BuildFlake(t.Context(), b, dir, tc.role, "x86_64-linux", &bytes.Buffer{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("BuildFlake() error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Attr != tc.attr || img.Installable != inst(tc.attr) || img.Artifact.VM != tc.vm || img.Artifact.Meta == "" {
				t.Fatalf("BuildFlake() = %+v, want attribute %s, VM %v", img, tc.attr, tc.vm)
			}
			if len(b.built) != 1 || b.built[0] != inst(tc.attr) {
				t.Fatalf("built %q, want only %s", b.built, inst(tc.attr))
			}
		})
	}
}

func TestFlakeImageProperties(t *testing.T) {
	tests := []struct {
		output string
		hash   string // "" = no hash property
	}{
		{"/nix/store/yi9svqd5zhh6x2hhxr8jibzn4zc0fjh9-pikaci-runner-incus-image", "yi9svqd5zhh6x2hhxr8jibzn4zc0fjh9"},
		{"/tmp/result", ""},
	}
	for _, tc := range tests {
		p := FlakeImage{Role: model.RolePikaciRunner, Attr: "pikaci-runner-incus-image", Output: tc.output}.Properties()
		want := map[string]string{RoleProperty: "pikaci-runner", FlakeAttrProperty: "pikaci-runner-incus-image", FlakeOutputProperty: tc.output}
		if tc.hash != "" {
			want[FlakeHashProperty] = tc.hash
		}
		if len(p) != len(want) {
			t.Errorf("Properties(%s) = %v, want %v", tc.output, p, want)
		}
		for k, v := range want {
			if p[k] != v {
				t.Errorf("Properties(%s)[%s] = %q, want %q", tc.output, k, p[k], v)
			}
		}
	}
}

func TestFlakeAttrs(t *testing.T) {
	for role, want := range map[model.IncusGuestRole]string{
		model.RolePikaciRunner:    "pikaci-runner-incus-image pikaci-incus-dev-image",
		model.RoleManagedOpenclaw: "managed-openclaw-incus-image pika-agent-incus-dev-image",
	} {
		if got := strings.Join(FlakeAttrs(role), " "); got != want {
			t.Errorf("FlakeAttrs(%s) = %q, want %q", role, got, want)
		}
	}
}
