package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"jerichoci/executor/incus"
	"jerichoci/images"
	"jerichoci/internal/testenv"
	"jerichoci/internal/treecopy"
)

// runImageFlakeCLI runs `jerichoci ARGS` as the command line has them.
func runImageFlakeCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, env: os.LookupEnv}
	code = c.main(t.Context(), args)
	return out.String(), errb.String(), code
}

// TestImageFlakeUsage: what --flake refuses before it asks Nix.
func TestImageFlakeUsage(t *testing.T) {
	noFlake := t.TempDir()
	tests := []struct {
		args   []string
		stderr string // substring
	}{
		{[]string{"image", "--role", "pikaci-runner", "import", "--flake", "."}, "jerichoci image: --flake: want build or build-import (import takes --artifact DIR)"},
		{[]string{"image", "build-import", "--role", "pikaci-runner", "--flake", ".", "--artifact", "result"}, "jerichoci image: --artifact: not with --flake"},
		{[]string{"image", "build", "--role", "pikaci-runner", "--flake", ".", "--runner", "x"}, "jerichoci image: --runner: not with --flake"},
		{[]string{"image", "--role", "nope", "build-import", "--flake", "."}, "unsupported role: nope\n"},
		{[]string{"image", "--role", "pikaci-runner", "build-import", "--flake", noFlake},
			"jerichoci: flake " + noFlake + ": want a directory with flake.nix: stat " + filepath.Join(noFlake, "flake.nix") + ": no such file or directory\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			stdout, stderr, code := runImageFlakeCLI(t, tc.args...)
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, exitUsage, tc.stderr)
			}
		})
	}
}

// flakeImageKind is what a test writes into image-files/<attr>/ of the
// fixture flake's copy.
type flakeImageKind int

const (
	flakeVM        flakeImageKind = iota // metadata.tar.xz + disk.qcow2 (qemu-img)
	flakeContainer                       // metadata.tar.xz + rootfs.tar.xz
	flakeMetaOnly                        // metadata.tar.xz alone: no image
)

// flakeImageTools are the host programs the image files are made with.
type flakeImageTools struct{ qemuImg, tar string }

// writeFlakeImageFiles writes the image files of attr into the flake copy
// dir: metadata.yaml in the original's shape (its description carries
// marker, so the image is this test's alone), packed with tar -cJ as the
// original packs it.
func writeFlakeImageFiles(t *testing.T, tools flakeImageTools, dir, attr, marker string, kind flakeImageKind) {
	t.Helper()
	files := filepath.Join(dir, "image-files", attr)
	work := t.TempDir()
	meta := fmt.Sprintf("architecture: x86_64\ncreation_date: 1\nproperties:\n  description: jerichoci test image %s\n  os: NixOS\n  release: unstable\n  variant: %s\n", marker, attr)
	rootfs := filepath.Join(work, "rootfs", "etc")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
	for _, d := range []string{files, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "metadata.yaml"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	run(tools.tar, "--owner=0", "--group=0", "-C", work, "-cJf", filepath.Join(files, "metadata.tar.xz"), "metadata.yaml")
	switch kind {
	case flakeVM:
		run(tools.qemuImg, "create", "-q", "-f", "qcow2", filepath.Join(files, "disk.qcow2"), "64M")
	case flakeContainer:
		if err := os.WriteFile(filepath.Join(rootfs, "hostname"), []byte(marker+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(tools.tar, "--owner=0", "--group=0", "-C", filepath.Join(work, "rootfs"), "-cJf", filepath.Join(files, "rootfs.tar.xz"), ".")
	}
}

var flakeUploadedRE = regexp.MustCompile(`: uploaded image ([0-9a-f]{64}) \((virtual-machine|container)\)\n`)

// TestImageBuildImportFromFlake builds the fixture flake's role image
// packages with the host's Nix and imports them into the real incusd
// under aliases of this run; incusd then has each with the right type,
// alias and properties. Importing a VM image needs no KVM. The test
// deletes only the aliases and images it made.
func TestImageBuildImportFromFlake(t *testing.T) {
	requireNix(t)
	var tools flakeImageTools
	var err error
	if tools.qemuImg, err = exec.LookPath("qemu-img"); err != nil {
		testenv.Missing(t, "needs qemu-img to make the fixture's VM disk (scripts/incus-up installs qemu-utils): %v", err)
	}
	if tools.tar, err = exec.LookPath("tar"); err == nil {
		_, err = exec.LookPath("xz")
	}
	if err != nil {
		testenv.Missing(t, "needs tar and xz to pack the fixture's image files: %v", err)
	}
	cl, err := execConfig{Project: defaultIncusProject}.incusClient(os.LookupEnv, nil)
	imageNeedHost(t, "no incusd", err)
	defer cl.Close()
	_, err = cl.Server(t.Context())
	imageNeedHost(t, "incusd not reachable", err)

	run := rand.Text()[:10]
	tests := []struct {
		name  string
		role  string
		files map[string]flakeImageKind // attribute → what its folder holds
		attr  string                    // the attribute built; "" = an error is wanted
		typ   string
		err   string // substring of stderr
	}{
		{name: "vm", role: "pikaci-runner", files: map[string]flakeImageKind{"pikaci-runner-incus-image": flakeVM},
			attr: "pikaci-runner-incus-image", typ: incus.TypeVirtualMachine},
		{name: "container", role: "pikaci-runner", files: map[string]flakeImageKind{"pikaci-runner-incus-image": flakeContainer},
			attr: "pikaci-runner-incus-image", typ: incus.TypeContainer},
		{name: "legacy", role: "managed-openclaw", files: map[string]flakeImageKind{"pika-agent-incus-dev-image": flakeVM, "pikaci-runner-incus-image": flakeVM},
			attr: "pika-agent-incus-dev-image", typ: incus.TypeVirtualMachine},
		{name: "missing-attribute", role: "pikaci-runner", files: map[string]flakeImageKind{"pika-agent-incus-dev-image": flakeContainer},
			err: "no image package for the role: packages.x86_64-linux has neither pikaci-runner-incus-image nor the legacy pikaci-incus-dev-image (it has only pika-agent-incus-dev-image)"},
		{name: "no-disk", role: "pikaci-runner", files: map[string]flakeImageKind{"pikaci-runner-incus-image": flakeMetaOnly},
			err: "-pikaci-runner-incus-image holds README.txt, metadata.tar.xz (image artifact"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "flake")
			if err := treecopy.Copy(ctx, "../../testdata/fixtures/role-image-flake", dir, treecopy.Options{}); err != nil {
				t.Fatal(err)
			}
			marker := run + "-" + tc.name
			for attr, kind := range tc.files {
				writeFlakeImageFiles(t, tools, dir, attr, marker, kind)
			}
			alias := "jci-test/flake-" + marker
			var fp string
			cleanupTestImage(t, cl, alias, &fp)

			// The original's argument order: --role R build-import, then the rest.
			stdout, stderr, code := runImageFlakeCLI(t, "image", "--role", tc.role, "build-import", "--flake", dir, "--alias", alias)
			if tc.attr == "" {
				if code != exitUsage || !strings.Contains(stderr, tc.err) {
					t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, exitUsage, tc.err)
				}
				if _, err := cl.GetImageAlias(ctx, alias); !incus.IsNotFound(err) {
					t.Fatalf("alias %s after a failed build-import: %v, want none", alias, err)
				}
				return
			}
			m := flakeUploadedRE.FindStringSubmatch(stdout)
			if code != exitOK || m == nil {
				t.Fatalf("build-import: exit %d, stdout %q, stderr %q; want an uploaded image", code, stdout, stderr)
			}
			fp = m[1]
			if m[2] != tc.typ || !strings.Contains(stdout, "packages.x86_64-linux."+tc.attr+": /nix/store/") {
				t.Fatalf("build-import printed %q, want %s built as a %s image", stdout, tc.attr, tc.typ)
			}

			a, err := cl.GetImageAlias(ctx, alias)
			if err != nil || a.Target != fp || a.Type != tc.typ {
				t.Fatalf("alias %s = %+v, %v; want target %s of type %s", alias, a, err, fp, tc.typ)
			}
			img, err := cl.GetImage(ctx, fp)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, a := range img.Aliases {
				names = append(names, a.Name)
			}
			if img.Type != tc.typ || !slices.Contains(names, alias) {
				t.Fatalf("image %s: type %s, aliases %q; want %s with %s", fp, img.Type, names, tc.typ, alias)
			}
			p := img.Properties
			out := p[images.FlakeOutputProperty]
			hash, _, _ := strings.Cut(strings.TrimPrefix(out, "/nix/store/"), "-")
			if p[images.RoleProperty] != tc.role || p[images.FlakeAttrProperty] != tc.attr ||
				!strings.HasPrefix(out, "/nix/store/") || !strings.HasSuffix(out, "-"+tc.attr) ||
				len(hash) != 32 || p[images.FlakeHashProperty] != hash ||
				p["os"] != "NixOS" || p["description"] != "jerichoci test image "+marker {
				t.Fatalf("image %s properties %v: want role %s, attribute %s, its output and hash, and metadata.yaml's", fp, p, tc.role, tc.attr)
			}
		})
	}
}
