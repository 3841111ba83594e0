package run

import (
	"encoding/json"
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
	if err := CopySnapshot(t.Context(), src, dst, filepath.Join(src, "state")); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(listTree(t, dst), ",")
	if got != "README.md,link,rust/src/lib.rs" {
		t.Errorf("snapshot holds %s", got)
	}
	if fi, err := os.Stat(filepath.Join(dst, "README.md")); err != nil || fi.Mode().Perm()&0o004 == 0 {
		t.Errorf("snapshot file not world-readable: %v %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "README.md" {
		t.Errorf("symlink = %q, %v", l, err)
	}
	h1 := snapshotHash(t, dst)
	// Same content, same hash; a changed byte, another hash.
	dst2 := filepath.Join(t.TempDir(), "snapshot")
	if err := CopySnapshot(t.Context(), src, dst2, filepath.Join(src, "state")); err != nil {
		t.Fatal(err)
	}
	if h2 := snapshotHash(t, dst2); h2 != h1 {
		t.Errorf("hash not stable: %s vs %s", h1, h2)
	}
	writeTree(t, src, map[string]string{"README.md": "ho"})
	dst3 := filepath.Join(t.TempDir(), "snapshot")
	if err := CopySnapshot(t.Context(), src, dst3); err != nil {
		t.Fatal(err)
	}
	if snapshotHash(t, dst3) == h1 {
		t.Error("hash did not change with content")
	}
}
