// Package images builds the small local runner image of each guest role and
// imports image directories into Incus.
//
// The runner image is a unified Incus image (metadata.yaml plus rootfs/)
// made from the host's busybox-static and bash-static: busybox init idles
// as PID 1, bash runs the compiled job commands (which start with `bash`),
// and a uid 1000 user `pikaci` runs them unprivileged. The tarball is
// reproducible (sorted names, fixed times and owners, no gzip timestamp),
// so its sha256, which is the Incus fingerprint, changes only with its
// content.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

// Fixed values of every built image.
const (
	// Epoch is the mtime of every tar entry and the image creation date.
	Epoch = 1700000000
	// ArtifactName is the file Build writes into an artifact directory.
	ArtifactName = "image.tar.gz"
	// User is the unprivileged user of the image, uid and gid UID.
	User = "pikaci"
	UID  = 1000
	// RoleProperty is the image property naming the guest role.
	RoleProperty = "jerichoci.role"
)

// Default host paths of the binaries copied into the image (Debian's
// busybox-static and bash-static packages).
const (
	DefaultBusybox = "/bin/busybox"
	DefaultBash    = "/bin/bash-static"
)

// File is an extra file to put into the image, e.g. a guest runner binary.
// Its parent directories are created (root, 0755) when missing.
type File struct {
	Path string      // absolute path in the guest
	Mode fs.FileMode // permission bits; 0 means 0644
	Data []byte
}

// Options configures Build.
type Options struct {
	Role    model.IncusGuestRole
	Busybox string // host path of a static busybox; DefaultBusybox when empty
	Bash    string // host path of a static bash; DefaultBash when empty
	Files   []File // extra files; they replace base files of the same path
}

// Image is a built image.
type Image struct {
	Tarball     []byte // unified tarball, gzip
	Fingerprint string // sha256 of Tarball, hex
}

// entry is one tar member below rootfs/ (or metadata.yaml).
type entry struct {
	typ      byte
	mode     int64
	uid, gid int
	data     []byte
	link     string
}

// Build makes the role's runner image.
func Build(ctx context.Context, opts Options) (*Image, error) {
	if !opts.Role.Valid() {
		return nil, fmt.Errorf("build image: unsupported role: %s", opts.Role)
	}
	fail := func(err error) (*Image, error) { return nil, fmt.Errorf("build %s image: %w", opts.Role, err) }
	bbPath, bashPath := opts.Busybox, opts.Bash
	if bbPath == "" {
		bbPath = DefaultBusybox
	}
	if bashPath == "" {
		bashPath = DefaultBash
	}
	busybox, err := os.ReadFile(bbPath)
	if err != nil {
		return fail(fmt.Errorf("busybox (Debian package busybox-static): %w", err))
	}
	bash, err := os.ReadFile(bashPath)
	if err != nil {
		return fail(fmt.Errorf("bash (Debian package bash-static): %w", err))
	}
	applets, version, err := busyboxApplets(ctx, bbPath)
	if err != nil {
		return fail(err)
	}
	arch, err := incusArch()
	if err != nil {
		return fail(err)
	}

	fsys := map[string]entry{}
	dir := func(p string, mode int64, uid int) {
		fsys[p] = entry{typ: tar.TypeDir, mode: mode, uid: uid, gid: uid}
	}
	file := func(p string, mode int64, data []byte) {
		fsys[p] = entry{typ: tar.TypeReg, mode: mode, data: data}
	}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin",
		"etc", "etc/init.d", "proc", "sys", "dev", "run", "run/pika-cloud", "var", "home", "workspace"} {
		dir(d, 0o755, 0)
	}
	dir("tmp", 0o1777, 0)
	dir("var/tmp", 0o1777, 0)
	dir("root", 0o700, 0)
	dir("home/"+User, 0o755, UID)
	for _, a := range applets {
		fsys[a] = entry{typ: tar.TypeSymlink, mode: 0o777, link: "/bin/busybox"}
	}
	file("bin/busybox", 0o755, busybox)
	file("bin/bash", 0o755, bash)
	file("etc/passwd", 0o644, []byte(fmt.Sprintf(
		"root:x:0:0:root:/root:/bin/sh\n%s:x:%d:%d:%s:/home/%s:/bin/bash\n", User, UID, UID, User, User)))
	file("etc/group", 0o644, []byte(fmt.Sprintf("root:x:0:\n%s:x:%d:\n", User, UID)))
	file("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"))
	file("etc/hostname", 0o644, []byte("jerichoci-runner\n"))
	file("etc/inittab", 0o644, []byte("::sysinit:/etc/init.d/rcS\n::shutdown:/bin/true\n"))
	file("etc/init.d/rcS", 0o755, []byte("#!/bin/sh\n# busybox init runs this once at boot; nothing to do.\nexit 0\n"))

	for _, f := range opts.Files {
		p := path.Clean(f.Path)
		if !path.IsAbs(f.Path) || p == "/" {
			return fail(fmt.Errorf("extra file %q: want an absolute file path", f.Path))
		}
		p = strings.TrimPrefix(p, "/")
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if e, ok := fsys[d]; !ok {
				dir(d, 0o755, 0)
			} else if e.typ != tar.TypeDir {
				return fail(fmt.Errorf("extra file %q: %s is not a directory in the image", f.Path, "/"+d))
			}
		}
		mode := int64(f.Mode.Perm())
		if mode == 0 {
			mode = 0o644
		}
		file(p, mode, f.Data)
	}

	meta := metadataYAML(opts.Role, arch, version)
	tarball, err := pack(meta, fsys)
	if err != nil {
		return fail(err)
	}
	sum := sha256.Sum256(tarball)
	return &Image{Tarball: tarball, Fingerprint: hex.EncodeToString(sum[:])}, nil
}

// Properties returns the image properties Build writes for a role.
func Properties(role model.IncusGuestRole, arch, busyboxVersion string) map[string]string {
	return map[string]string{
		"architecture": arch,
		"description":  fmt.Sprintf("jerichoci %s runner image: %s (busybox and bash)", role, role.Description()),
		"os":           "busybox",
		"release":      busyboxVersion,
		RoleProperty:   string(role),
	}
}

func metadataYAML(role model.IncusGuestRole, arch, version string) []byte {
	props := Properties(role, arch, version)
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "architecture: %s\ncreation_date: %d\nproperties:\n", yamlQuote(arch), Epoch)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %s\n", k, yamlQuote(props[k]))
	}
	b.WriteString("templates: {}\n")
	return []byte(b.String())
}

// yamlQuote writes a double-quoted YAML scalar.
func yamlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

var busyboxVersion = regexp.MustCompile(`BusyBox v([0-9][0-9A-Za-z.\-]*)`)

// busyboxApplets asks the busybox binary for its applet paths (relative,
// e.g. "bin/sh") and its version.
func busyboxApplets(ctx context.Context, bb string) ([]string, string, error) {
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return nil, "", fmt.Errorf("%s --list-full: %w", bb, err)
	}
	var applets []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "/") || strings.Contains(l, "..") {
			return nil, "", fmt.Errorf("%s --list-full: unexpected applet path %q", bb, l)
		}
		applets = append(applets, l)
	}
	if len(applets) == 0 {
		return nil, "", fmt.Errorf("%s --list-full: no applets", bb)
	}
	// busybox prints its banner (with the version) when called without an
	// applet; the exit status is 0 or 1 depending on the build.
	banner, _ := exec.CommandContext(ctx, bb).CombinedOutput()
	m := busyboxVersion.FindSubmatch(banner)
	if m == nil {
		return nil, "", fmt.Errorf("%s: no version in its banner", bb)
	}
	return applets, string(m[1]), nil
}

// incusArch names the host architecture as Incus does.
func incusArch() (string, error) {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64", nil
	case "arm64":
		return "aarch64", nil
	case "riscv64":
		return "riscv64", nil
	}
	return "", fmt.Errorf("unsupported architecture %s", runtime.GOARCH)
}

// pack writes the deterministic unified tarball: sorted names, one mtime,
// numeric owners only, gzip without name or time.
func pack(meta []byte, fsys map[string]entry) ([]byte, error) {
	mtime := time.Unix(Epoch, 0)
	names := make([]string, 0, len(fsys))
	for n := range fsys {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	write := func(h *tar.Header, data []byte) error {
		h.ModTime = mtime
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", h.Name, err)
		}
		if len(data) > 0 {
			if _, err := tw.Write(data); err != nil {
				return fmt.Errorf("tar %s: %w", h.Name, err)
			}
		}
		return nil
	}
	if err := write(&tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(meta))}, meta); err != nil {
		return nil, err
	}
	if err := write(&tar.Header{Name: "rootfs/", Typeflag: tar.TypeDir, Mode: 0o755}, nil); err != nil {
		return nil, err
	}
	for _, n := range names {
		e := fsys[n]
		h := &tar.Header{Name: "rootfs/" + n, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.link
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		}
		if err := write(h, e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BuildDir builds the image into dir/ArtifactName (written atomically) and
// returns the artifact.
func BuildDir(ctx context.Context, dir string, opts Options) (Artifact, *Image, error) {
	img, err := Build(ctx, opts)
	if err != nil {
		return Artifact{}, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Artifact{}, nil, fmt.Errorf("build %s image: %w", opts.Role, err)
	}
	if a, err := FindArtifact(dir); err == nil && a.Meta != "" {
		return Artifact{}, nil, fmt.Errorf("build %s image: %s holds a split image (%s); choose another artifact directory",
			opts.Role, dir, filepath.Base(a.Meta))
	}
	dst := filepath.Join(dir, ArtifactName)
	if err := atomicfile.WriteFile(dst, img.Tarball, 0o644); err != nil {
		return Artifact{}, nil, fmt.Errorf("build %s image: %w", opts.Role, err)
	}
	return Artifact{Unified: dst}, img, nil
}

// errNoImage is returned by FindArtifact for a directory without an image.
var errNoImage = errors.New("no image found")
