package run

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"jerichoci/model"
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

// snapshotHash is the content hash in dst/pikaci-snapshot.json.
func snapshotHash(t *testing.T, dst string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dst, model.SnapshotMetadataFile))
	if err != nil {
		t.Fatal(err)
	}
	var m model.SnapshotMetadata
	if err := json.Unmarshal(b, &m); err != nil || m.ContentHash == nil || len(*m.ContentHash) != 64 {
		t.Fatalf("metadata %s: %v", b, err)
	}
	return *m.ContentHash
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
	// As the Runner's Snapshot takes it: the state root inside the source.
	if _, err := SnapshotsOutside(filepath.Join(src, "state"))(t.Context(), src, dst, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(listTree(t, dst), ",")
	if got != "README.md,link,pikaci-snapshot.json,rust/src/lib.rs" {
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

// goldenTree is a fixed small tree; its ProfileFull content hash is
// goldenHash.
func goldenTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"B.txt": "upper", "a.txt": "hello\n", "build/out": "kept", "dir/b.txt": "b",
		"dir/build/skip": "nested build is skipped", "target/x": "skipped",
		"pikaci-snapshot.json": `{"content_hash":"stale"}`,
	})
	if err := os.Symlink("../a.txt", filepath.Join(src, "dir", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	return src
}

// goldenHash was computed once, by hand from the recipe, with
//
//	python3 -c 'import hashlib; print(hashlib.sha256(
//	  b"file\0B.txt\0upper\0" b"file\0a.txt\0hello\n\0" b"dir\0build\0"
//	  b"file\0build/out\0kept\0" b"dir\0dir\0" b"file\0dir/b.txt\0b\0"
//	  b"symlink\0dir/link\0../a.txt\0" b"dir\0empty\0").hexdigest())'
//
// (entries sorted byte-wise, so B.txt first; root build/ kept, dir/build/,
// target/ and the root pikaci-snapshot.json left out).
const goldenHash = "1097ec1fdbbf25dbf4d51cf5a46fc2b045f4ceb39409b565defba22b6202922d"

func TestContentHashGolden(t *testing.T) {
	src := goldenTree(t)
	if got, err := ContentHash(src, ProfileFull); err != nil || got != goldenHash {
		t.Errorf("ContentHash(source) = %s, %v; want %s", got, err, goldenHash)
	}
	if got, err := ContentHash(src, ""); err != nil || got != goldenHash {
		t.Errorf("ContentHash(source, empty profile) = %s, %v; want %s", got, err, goldenHash)
	}
	dst := filepath.Join(t.TempDir(), "run", "snapshot")
	head, dirty := "0123abcd", true
	created := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	meta, err := CopySnapshot(t.Context(), src, dst, SnapshotOptions{GitHead: &head, GitDirty: &dirty, CreatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
	if meta.ContentHash == nil || *meta.ContentHash != goldenHash {
		t.Errorf("metadata content hash = %v, want %s", meta.ContentHash, goldenHash)
	}
	if meta.SourceRoot != src || meta.SnapshotDir != dst || meta.GitHead == nil || *meta.GitHead != head ||
		meta.GitDirty == nil || !*meta.GitDirty || !meta.CreatedAt.Equal(created) {
		t.Errorf("metadata = %+v", meta)
	}
	// The file inside the snapshot is the metadata returned, replacing the
	// source's own; nothing is written beside the snapshot.
	b, err := os.ReadFile(filepath.Join(dst, model.SnapshotMetadataFile))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := model.EncodeFile(meta); string(b) != string(want) {
		t.Errorf("pikaci-snapshot.json = %s, want %s", b, want)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(dst), model.SnapshotMetadataFile)); !os.IsNotExist(err) {
		t.Errorf("a pikaci-snapshot.json beside the snapshot: %v", err)
	}
	// The snapshot, its metadata file included, hashes as its source.
	if got, err := ContentHash(dst, ProfileFull); err != nil || got != goldenHash {
		t.Errorf("ContentHash(snapshot) = %s, %v; want %s", got, err, goldenHash)
	}
	got := strings.Join(listTree(t, dst), ",")
	if want := "B.txt,a.txt,build/out,dir/b.txt,dir/link,pikaci-snapshot.json"; got != want {
		t.Errorf("snapshot holds %s, want %s", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || !fi.IsDir() {
		t.Errorf("empty dir not copied: %v", err)
	}
}

func TestSnapshotSkipRules(t *testing.T) {
	paths := []string{
		"src/f", "build/f", "x/build/f", "node_modules/f", "x/node_modules/f", ".gradle/f", "x/.gradle/f",
		"DerivedData/f", "x/DerivedData/f", "ios/f", "x/ios/f", "android/f", "x/android/f",
		"target/f", "x/target/f", ".git/f", "x/.git/f", ".pikaci/f", "x/.direnv/f", "x/y/build",
	}
	tests := []struct {
		profile SnapshotProfile
		kept    string
	}{
		{ProfileFull, "DerivedData/f,android/f,build/f,ios/f,node_modules/f,src/f,.gradle/f,x/android/f,x/ios/f"},
		{"", "DerivedData/f,android/f,build/f,ios/f,node_modules/f,src/f,.gradle/f,x/android/f,x/ios/f"},
		{ProfileRust, "DerivedData/f,build/f,node_modules/f,src/f,.gradle/f,x/android/f,x/ios/f"},
		{ProfileFollowup, "DerivedData/f,android/f,build/f,node_modules/f,src/f,.gradle/f,x/android/f,x/ios/f"},
	}
	src := t.TempDir()
	files := map[string]string{}
	for _, p := range paths {
		files[p] = p
	}
	writeTree(t, src, files)
	for _, tt := range tests {
		name := string(tt.profile)
		if name == "" {
			name = "empty"
		}
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "snapshot")
			meta, err := CopySnapshot(t.Context(), src, dst, SnapshotOptions{Profile: tt.profile})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range listTree(t, dst) {
				if p != model.SnapshotMetadataFile {
					got = append(got, p)
				}
			}
			want := strings.Split(tt.kept, ",")
			sort.Strings(want)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("kept %v, want %v", got, want)
			}
			// A filtered source tree hashes identically to its snapshot.
			for _, dir := range []string{src, dst} {
				if h, err := ContentHash(dir, tt.profile); err != nil || h != *meta.ContentHash {
					t.Errorf("ContentHash(%s) = %s, %v; want the snapshot's %s", dir, h, err, *meta.ContentHash)
				}
			}
		})
	}
	full, _ := ContentHash(src, ProfileFull)
	rust, _ := ContentHash(src, ProfileRust)
	followup, _ := ContentHash(src, ProfileFollowup)
	if full == rust || full == followup || rust == followup {
		t.Errorf("profiles hash alike: full %s, rust %s, followup %s", full, rust, followup)
	}
}

func TestSnapshotUnknownProfile(t *testing.T) {
	src := t.TempDir()
	if _, err := CopySnapshot(t.Context(), src, filepath.Join(t.TempDir(), "s"), SnapshotOptions{Profile: "Rust"}); err == nil ||
		!strings.Contains(err.Error(), `unknown snapshot profile "Rust"`) {
		t.Errorf("CopySnapshot: %v", err)
	}
	if _, err := ContentHash(src, "ios"); err == nil {
		t.Error("ContentHash took an unknown profile")
	}
}

func TestSnapshotRefusesSpecialFiles(t *testing.T) {
	fifo := func(p string) error { return syscall.Mkfifo(p, 0o644) }
	sock := func(p string) error {
		l, err := net.Listen("unix", p)
		if err == nil {
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}
		return err
	}
	for _, tt := range []struct {
		name, kind string
		make       func(string) error
	}{{"pipe", "FIFO", fifo}, {"sock", "socket", sock}} {
		t.Run(tt.kind, func(t *testing.T) {
			src := t.TempDir()
			writeTree(t, src, map[string]string{"a/README": "hi"})
			p := filepath.Join(src, "a", tt.name)
			if err := tt.make(p); err != nil {
				t.Fatal(err)
			}
			want := "unsupported filesystem entry: " + p + " is a " + tt.kind
			_, err := CopySnapshot(t.Context(), src, filepath.Join(t.TempDir(), "snapshot"), SnapshotOptions{})
			if err == nil || err.Error() != want {
				t.Errorf("CopySnapshot: %v, want %q", err, want)
			}
			if _, err := ContentHash(src, ProfileFull); err == nil || err.Error() != want {
				t.Errorf("ContentHash: %v, want %q", err, want)
			}
		})
	}
	// One in a skipped directory is never looked at.
	src := t.TempDir()
	writeTree(t, src, map[string]string{"README": "hi", "target/x": "x", "a/node_modules/x": "x"})
	for _, p := range []string{"target/pipe", "a/node_modules/pipe"} {
		if err := fifo(filepath.Join(src, p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := CopySnapshot(t.Context(), src, filepath.Join(t.TempDir(), "snapshot"), SnapshotOptions{}); err != nil {
		t.Errorf("FIFOs in skipped directories: %v", err)
	}
}

// A root pikaci-snapshot.json of the source that is a symlink is replaced,
// never written through.
func TestSnapshotMetadataReplacesSourceSymlink(t *testing.T) {
	src := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside.json")
	writeTree(t, src, map[string]string{"README": "hi"})
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(src, model.SnapshotMetadataFile)); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "snapshot")
	if _, err := CopySnapshot(t.Context(), src, dst, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
		t.Errorf("outside file = %q, %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(dst, model.SnapshotMetadataFile)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("snapshot metadata is not a regular file: %v, %v", fi, err)
	}
	snapshotHash(t, dst)
}

// A source root without write permission gives a read-only snapshot root
// that still holds its metadata.
func TestSnapshotReadOnlyRoot(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"README": "hi"})
	if err := os.Chmod(src, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(src, 0o755) })
	dst := filepath.Join(t.TempDir(), "snapshot")
	t.Cleanup(func() { os.Chmod(dst, 0o755) })
	if _, err := CopySnapshot(t.Context(), src, dst, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("snapshot root mode %v, %v; want 0555", fi.Mode(), err)
	}
	snapshotHash(t, dst)
}

func TestSnapshotCanceled(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"README": "hi"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := CopySnapshot(ctx, src, filepath.Join(t.TempDir(), "snapshot"), SnapshotOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("CopySnapshot with a canceled context: %v", err)
	}
}
