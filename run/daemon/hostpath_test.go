package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveHostPath(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "src")
	for _, d := range []string{"src/repo/sub", "elsewhere"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"src/inside": "repo/sub", "src/out": "../elsewhere", "src/etc": "/etc", "rootlink": "src", "src/proc": "/proc/self",
	} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, root, path string
		want             string // the resolved path, or the error text
		refused          bool
	}{
		{"a directory", root, filepath.Join(root, "repo"), filepath.Join(root, "repo"), false},
		{"the root itself", root, root, root, false},
		{"through an inside link", root, filepath.Join(root, "inside"), filepath.Join(root, "repo", "sub"), false},
		{"unclean", root, root + "/repo/../repo/sub/", filepath.Join(root, "repo", "sub"), false},
		{"a root that is a link", filepath.Join(base, "rootlink"), filepath.Join(base, "rootlink", "repo"), filepath.Join(root, "repo"), false},
		{"no root", "", "/srv", "host_path sources are refused: this daemon was started without --host-path-root", true},
		{"relative", root, "repo", `host_path "repo": expected an absolute path`, true},
		{"missing", root, filepath.Join(root, "nope"), `host_path "` + filepath.Join(root, "nope") + `" does not exist`, true},
		{"a file", root, filepath.Join(root, "file"), `host_path "` + filepath.Join(root, "file") + `" is not a directory`, true},
		{"outside", root, "/etc", `host_path "/etc" resolves to "/etc", outside --host-path-root "` + root + `"`, true},
		{"a sibling with the root as prefix", root, root + "x", `host_path "` + root + `x" does not exist`, true},
		{"a link out", root, filepath.Join(root, "out"),
			`host_path "` + filepath.Join(root, "out") + `" resolves to "` + filepath.Join(base, "elsewhere") + `", outside --host-path-root "` + root + `"`, true},
		{"an absolute link out", root, filepath.Join(root, "etc"),
			`host_path "` + filepath.Join(root, "etc") + `" resolves to "/etc", outside --host-path-root "` + root + `"`, true},
		{"a link to proc", root, filepath.Join(root, "proc"), "outside --host-path-root", true},
		{"proc under the root /", "/", "/proc", `host_path "/proc" resolves to "/proc", under /proc`, true},
		{"sys under the root /", "/", "/sys/kernel", `host_path "/sys/kernel" resolves to "/sys/kernel", under /sys`, true},
		{"dev under the root /", "/", "/dev", `host_path "/dev" resolves to "/dev", under /dev`, true},
		{"any directory under the root /", "/", root, root, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveHostPath(tc.root, tc.path)
			switch {
			case !tc.refused && (err != nil || got != tc.want):
				t.Errorf("ResolveHostPath(%q, %q) = %q, %v; want %q", tc.root, tc.path, got, err, tc.want)
			case tc.refused && (!errors.Is(err, ErrHostPathRefused) || !strings.Contains(err.Error(), tc.want) || got != ""):
				t.Errorf("ResolveHostPath(%q, %q) = %q, %v; want a refusal saying %q", tc.root, tc.path, got, err, tc.want)
			}
		})
	}
}

func TestResolveHostPathRootMissing(t *testing.T) {
	_, err := ResolveHostPath(filepath.Join(t.TempDir(), "gone"), "/etc")
	if err == nil || errors.Is(err, ErrHostPathRefused) {
		t.Errorf("ResolveHostPath with a missing root = %v, want an error of the daemon, no refusal", err)
	}
}

// TestSpecialFilesystem checks one mount point of each filesystem type
// of this machine: kernel ones are named, others are not.
func TestSpecialFilesystem(t *testing.T) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Skipf("no /proc/mounts: %v", err)
	}
	known := map[string]bool{}
	for _, name := range specialFilesystems {
		known[name] = true
	}
	checked := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || checked[f[2]] || strings.Contains(f[1], "\\") {
			continue
		}
		want := ""
		if known[f[2]] {
			want = f[2]
		}
		got, err := specialFilesystem(f[1])
		if err != nil {
			continue // not ours to see
		}
		checked[f[2]] = true
		if got != want {
			t.Errorf("specialFilesystem(%s), a %s mount = %q, want %q", f[1], f[2], got, want)
		}
	}
	for _, must := range []string{"proc", "sysfs"} {
		if !checked[must] {
			t.Errorf("no %s mount was checked", must)
		}
	}
	t.Logf("checked %d filesystem types", len(checked))
}
