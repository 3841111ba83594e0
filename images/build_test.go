package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// fakeHost writes a stand-in busybox (a script answering --list-full and
// printing a banner) and bash, so builds need no host packages.
func fakeHost(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	bb := filepath.Join(dir, "busybox")
	script := "#!/bin/sh\nif [ \"$1\" = --list-full ]; then printf 'bin/sh\\nsbin/init\\nusr/bin/id\\nbin/true\\n'; exit 0; fi\n" +
		"echo 'BusyBox v1.36.1 (test) multi-call binary.'\nexit 1\n"
	if err := os.WriteFile(bb, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bash := filepath.Join(dir, "bash")
	if err := os.WriteFile(bash, []byte("BASH-BINARY"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{Role: model.RolePikaciRunner, Busybox: bb, Bash: bash}
}

type member struct {
	hdr  *tar.Header
	data []byte
}

// unpack reads a built tarball; it also checks the gzip header is bare.
func unpack(t *testing.T, tarball []byte) ([]string, map[string]member) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tarball))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header has time %v and name %q, want neither", zr.ModTime, zr.Name)
	}
	tr := tar.NewReader(zr)
	var names []string
	members := map[string]member{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		members[h.Name] = member{h, data}
	}
	return names, members
}

func TestBuildIsReproducible(t *testing.T) {
	opts := fakeHost(t)
	a, err := Build(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint != b.Fingerprint || !bytes.Equal(a.Tarball, b.Tarball) {
		t.Fatalf("two builds differ: %s vs %s", a.Fingerprint, b.Fingerprint)
	}
	sum := sha256.Sum256(a.Tarball)
	if a.Fingerprint != hex.EncodeToString(sum[:]) {
		t.Fatalf("Fingerprint = %s, want sha256 of the tarball", a.Fingerprint)
	}
}

func TestBuildFingerprintFollowsContent(t *testing.T) {
	opts := fakeHost(t)
	base, err := Build(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(o *Options)
		same   bool
	}{
		{name: "nothing", change: func(*Options) {}, same: true},
		{name: "other role", change: func(o *Options) { o.Role = model.RoleManagedOpenclaw }},
		{name: "extra file", change: func(o *Options) { o.Files = []File{{Path: "/usr/local/bin/runner", Mode: 0o755, Data: []byte("x")}} }},
		{name: "extra file mode", change: func(o *Options) { o.Files = []File{{Path: "/usr/local/bin/runner", Mode: 0o700, Data: []byte("x")}} }},
		{name: "bash content", change: func(o *Options) {
			p := filepath.Join(t.TempDir(), "bash")
			os.WriteFile(p, []byte("OTHER"), 0o755)
			o.Bash = p
		}},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			tc.change(&o)
			img, err := Build(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			if (img.Fingerprint == base.Fingerprint) != tc.same {
				t.Fatalf("fingerprint %s, base %s: same = %v, want %v", img.Fingerprint, base.Fingerprint, !tc.same, tc.same)
			}
			if !tc.same {
				if other, ok := seen[img.Fingerprint]; ok {
					t.Fatalf("same fingerprint as %q", other)
				}
				seen[img.Fingerprint] = tc.name
			}
		})
	}
}

func TestBuildContent(t *testing.T) {
	opts := fakeHost(t)
	opts.Files = []File{
		{Path: "/opt/jerichoci/bin/runner", Mode: 0o755, Data: []byte("RUNNER")},
		{Path: "/etc/hostname", Data: []byte("custom\n")}, // replaces a base file
	}
	img, err := Build(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	names, m := unpack(t, img.Tarball)

	if !sort.StringsAreSorted(names[1:]) || names[0] != "metadata.yaml" || names[1] != "rootfs/" {
		t.Errorf("members not metadata.yaml, rootfs/ then sorted: %q", names)
	}
	for _, n := range names {
		h := m[n].hdr
		if h.ModTime.Unix() != Epoch {
			t.Errorf("%s: mtime %v, want %d", n, h.ModTime, Epoch)
		}
		wantID := 0
		if n == "rootfs/home/pikaci/" {
			wantID = UID
		}
		if h.Uid != wantID || h.Gid != wantID || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want %d:%d numeric", n, h.Uid, h.Gid, h.Uname, h.Gname, wantID, wantID)
		}
	}

	meta := string(m["metadata.yaml"].data)
	for _, want := range []string{
		"architecture: \"x86_64\"\n", "creation_date: 1700000000\n", "  jerichoci.role: \"pikaci-runner\"\n",
		"  os: \"busybox\"\n", "  release: \"1.36.1\"\n", "  description: \"jerichoci pikaci-runner runner image: CI runner guest",
	} {
		if !strings.Contains(meta, want) {
			t.Errorf("metadata.yaml lacks %q:\n%s", want, meta)
		}
	}

	tests := []struct {
		name string
		typ  byte
		mode int64
		data string
		link string
	}{
		{name: "rootfs/bin/bash", typ: tar.TypeReg, mode: 0o755, data: "BASH-BINARY"},
		{name: "rootfs/bin/busybox", typ: tar.TypeReg, mode: 0o755},
		{name: "rootfs/bin/sh", typ: tar.TypeSymlink, mode: 0o777, link: "/bin/busybox"},
		{name: "rootfs/sbin/init", typ: tar.TypeSymlink, mode: 0o777, link: "/bin/busybox"},
		{name: "rootfs/usr/bin/id", typ: tar.TypeSymlink, mode: 0o777, link: "/bin/busybox"},
		{name: "rootfs/etc/passwd", typ: tar.TypeReg, mode: 0o644,
			data: "root:x:0:0:root:/root:/bin/sh\npikaci:x:1000:1000:pikaci:/home/pikaci:/bin/bash\n"},
		{name: "rootfs/etc/group", typ: tar.TypeReg, mode: 0o644, data: "root:x:0:\npikaci:x:1000:\n"},
		{name: "rootfs/etc/inittab", typ: tar.TypeReg, mode: 0o644, data: "::sysinit:/etc/init.d/rcS\n::shutdown:/bin/true\n"},
		{name: "rootfs/etc/init.d/rcS", typ: tar.TypeReg, mode: 0o755},
		{name: "rootfs/etc/hostname", typ: tar.TypeReg, mode: 0o644, data: "custom\n"},
		{name: "rootfs/tmp/", typ: tar.TypeDir, mode: 0o1777},
		{name: "rootfs/var/tmp/", typ: tar.TypeDir, mode: 0o1777},
		{name: "rootfs/root/", typ: tar.TypeDir, mode: 0o700},
		{name: "rootfs/home/pikaci/", typ: tar.TypeDir, mode: 0o755},
		{name: "rootfs/run/pika-cloud/", typ: tar.TypeDir, mode: 0o755},
		{name: "rootfs/workspace/", typ: tar.TypeDir, mode: 0o755},
		{name: "rootfs/proc/", typ: tar.TypeDir, mode: 0o755},
		{name: "rootfs/dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "rootfs/opt/jerichoci/bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "rootfs/opt/jerichoci/bin/runner", typ: tar.TypeReg, mode: 0o755, data: "RUNNER"},
	}
	for _, tc := range tests {
		e, ok := m[tc.name]
		if !ok {
			t.Errorf("%s: missing", tc.name)
			continue
		}
		if e.hdr.Typeflag != tc.typ || e.hdr.Mode != tc.mode || e.hdr.Linkname != tc.link {
			t.Errorf("%s: type %c mode %o link %q, want %c %o %q", tc.name, e.hdr.Typeflag, e.hdr.Mode, e.hdr.Linkname, tc.typ, tc.mode, tc.link)
		}
		if tc.data != "" && string(e.data) != tc.data {
			t.Errorf("%s: content %q, want %q", tc.name, e.data, tc.data)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		change  func(o *Options)
		wantErr string
	}{
		{name: "unknown role", change: func(o *Options) { o.Role = "nope" }, wantErr: "unsupported role: nope"},
		{name: "relative extra file", change: func(o *Options) { o.Files = []File{{Path: "etc/x"}} }, wantErr: "want an absolute file path"},
		{name: "root as extra file", change: func(o *Options) { o.Files = []File{{Path: "/"}} }, wantErr: "want an absolute file path"},
		{name: "extra file below a file", change: func(o *Options) { o.Files = []File{{Path: "/etc/passwd/x"}} }, wantErr: "/etc/passwd is not a directory"},
		{name: "missing busybox", change: func(o *Options) { o.Busybox = "/nonexistent/busybox" }, wantErr: "busybox-static"},
		{name: "missing bash", change: func(o *Options) { o.Bash = "/nonexistent/bash" }, wantErr: "bash-static"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := fakeHost(t)
			tc.change(&o)
			_, err := Build(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build() error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestBuildWithHostPackages builds from Debian's busybox-static and
// bash-static, as scripts/incus-up does.
func TestBuildWithHostPackages(t *testing.T) {
	for _, p := range []string{DefaultBusybox, DefaultBash} {
		if _, err := os.Stat(p); err != nil {
			testenv.Missing(t, "%s missing: install busybox-static and bash-static (scripts/incus-up does)", p)
		}
	}
	img, err := Build(t.Context(), Options{Role: model.RolePikaciRunner})
	if err != nil {
		t.Fatal(err)
	}
	_, m := unpack(t, img.Tarball)
	if len(m) < 100 {
		t.Fatalf("%d members, want busybox's applets too", len(m))
	}
	for _, n := range []string{"rootfs/bin/sh", "rootfs/sbin/init", "rootfs/bin/sleep", "rootfs/usr/bin/timeout"} {
		if m[n].hdr == nil || m[n].hdr.Linkname != "/bin/busybox" {
			t.Errorf("%s is not a busybox applet link", n)
		}
	}
	bash, _ := os.ReadFile(DefaultBash)
	if !bytes.Equal(m["rootfs/bin/bash"].data, bash) {
		t.Error("rootfs/bin/bash is not the host's bash-static")
	}
}
