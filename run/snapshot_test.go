package run

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if rel, _ := filepath.Rel(root, p); rel != "." && !d.IsDir() {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func snapshotHash(t *testing.T, dst string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(dst), "pikaci-snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m SnapshotMarker
	if err := json.Unmarshal(b, &m); err != nil || len(m.ContentHash) != 64 {
		t.Fatalf("marker %s: %v", b, err)
	}
	return m.ContentHash
}

func TestCopySnapshot(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"README.md": "hi", "rust/src/lib.rs": "fn main(){}", ".git/HEAD": "ref", ".pikaci/runs/x": "no",
		".direnv/env": "no", "target/debug/bin": "no", "crates/a/target/x": "no", "state/runs/r/run.json": "no",
	})
	if err := os.Symlink("README.md", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "run", "snapshot")
	if _, err := CopySnapshot(t.Context(), src, dst, SnapshotOptions{Exclude: []string{filepath.Join(src, "state")}}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(listTree(t, dst), ",")
	if got != "README.md,link,rust/src/lib.rs" {
		t.Errorf("snapshot holds %s", got)
	}
	if fi, err := os.Stat(filepath.Join(dst, "README.md")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file mode %v, %v; want its source's 0600", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "README.md" {
		t.Errorf("symlink = %q, %v", l, err)
	}
	h1 := snapshotHash(t, dst)
	// Same content, same hash; a changed byte, another hash.
	dst2 := filepath.Join(t.TempDir(), "snapshot")
	if _, err := CopySnapshot(t.Context(), src, dst2, SnapshotOptions{Exclude: []string{filepath.Join(src, "state")}}); err != nil {
		t.Fatal(err)
	}
	if h2 := snapshotHash(t, dst2); h2 != h1 {
		t.Errorf("hash not stable: %s vs %s", h1, h2)
	}
	writeTree(t, src, map[string]string{"README.md": "ho"})
	dst3 := filepath.Join(t.TempDir(), "snapshot")
	if _, err := CopySnapshot(t.Context(), src, dst3, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if snapshotHash(t, dst3) == h1 {
		t.Error("hash did not change with content")
	}
}

func TestCopySnapshotNeverWidensPermissions(t *testing.T) {
	src := t.TempDir()
	files := []struct {
		name string
		mode os.FileMode // applied after the contents, deepest first
		dir  bool
	}{
		{"private", 0o600, false},
		{"group", 0o640, false},
		{"exec", 0o755, false},
		{"none", 0o000, false},
		{"suid", 0o755 | os.ModeSetuid | os.ModeSetgid, false},
		{"ro/file", 0o444, false},
		{"ro", 0o500, true},
		{"closed/file", 0o644, false},
		{"closed", 0o700, true},
		{"shared/file", 0o664, false},
		{"shared", 0o775 | os.ModeSetgid, true},
		{"tmp", 0o777 | os.ModeSticky, true},
	}
	for _, f := range files {
		p := filepath.Join(src, f.name)
		if f.dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if err := os.Chmod(filepath.Join(src, f.name), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("private", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o750); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "run", "snapshot")
	if _, err := CopySnapshot(t.Context(), src, dst, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	special := os.ModeSetuid | os.ModeSetgid | os.ModeSticky
	copied := 0
	err := filepath.WalkDir(src, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		from, err := os.Lstat(p)
		if err != nil {
			return err
		}
		to, err := os.Lstat(filepath.Join(dst, rel))
		if err != nil {
			t.Errorf("%s: not copied: %v", rel, err)
			return nil
		}
		copied++
		if to.Mode().Type() != from.Mode().Type() {
			t.Errorf("%s: type %v, want %v", rel, to.Mode().Type(), from.Mode().Type())
		}
		if to.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		if wider := to.Mode().Perm() &^ from.Mode().Perm(); wider != 0 {
			t.Errorf("%s: mode %v is wider than its source's %v (by %v)", rel, to.Mode(), from.Mode(), wider)
		}
		if to.Mode().Perm() != from.Mode().Perm() {
			t.Errorf("%s: mode %v, want its source's %v", rel, to.Mode().Perm(), from.Mode().Perm())
		}
		if to.Mode()&special != 0 {
			t.Errorf("%s: mode %v keeps a setuid, setgid or sticky bit", rel, to.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(files) + 2; copied != want { // the symlink and the root
		t.Errorf("compared %d paths, want %d", copied, want)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "ro", "file")); err != nil || string(b) != "ro/file" {
		t.Errorf("ro/file = %q, %v", b, err)
	}
}
