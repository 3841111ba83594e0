package run

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hermeticGit keeps the machine's git configuration out of the tests (and
// of the SourceFingerprint calls they make).
func hermeticGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_AUTHOR_NAME", "pikaci tests")
	t.Setenv("GIT_AUTHOR_EMAIL", "pikaci-tests@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "pikaci tests")
	t.Setenv("GIT_COMMITTER_EMAIL", "pikaci-tests@example.com")
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitRepo is a work tree with files committed.
func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("GIT_CEILING_DIRECTORIES", filepath.Dir(dir))
	writeTree(t, dir, files)
	gitIn(t, dir, "init", "-q")
	gitIn(t, dir, "add", ".")
	gitIn(t, dir, "commit", "-q", "-m", "init")
	return dir
}

func fingerprint(t *testing.T, dir string, profile SnapshotProfile) string {
	t.Helper()
	fp, err := SourceFingerprint(t.Context(), dir, profile)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// The fingerprint is the recipe's, byte for byte: HEAD, then the changed
// and ignored paths the profile keeps, sorted as strings, a nested
// repository as one directory.
func TestSourceFingerprintRecipe(t *testing.T) {
	hermeticGit(t)
	dir := gitRepo(t, map[string]string{
		"Cargo.toml": "[package]\n", "src/lib.rs": "pub fn demo() {}\n", "keep.txt": "same",
		".gitignore": "android/local.properties\n",
	})
	head := gitIn(t, dir, "rev-parse", "HEAD")
	if got, want := fingerprint(t, dir, ProfileFull), sha256Hex("git-head\x00"+head+"\x00"); got != want {
		t.Errorf("clean tree: %s, want %s", got, want)
	}

	writeTree(t, dir, map[string]string{
		"src/lib.rs": "pub fn demo() -> u32 { 42 }\n", "new.txt": "new",
		"android/local.properties": "sdk.dir=/tmp/one\n",                           // ignored, yet in the snapshot
		"target/stale":             "x", "x/node_modules/y": "x", "x/build/z": "x", // not in the snapshot
	})
	if err := os.Remove(filepath.Join(dir, "Cargo.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("src/lib.rs", filepath.Join(dir, "ln")); err != nil {
		t.Fatal(err)
	}
	nested := filepath.Join(dir, "openclaw")
	writeTree(t, nested, map[string]string{"package.json": "{}\n", "node_modules/m": "x"})
	gitIn(t, nested, "init", "-q")
	gitIn(t, nested, "add", "package.json")
	gitIn(t, nested, "commit", "-q", "-m", "init")

	want := sha256Hex("git-head\x00" + head + "\x00" +
		"path\x00Cargo.toml\x00missing\x00\x00" +
		"path\x00android/local.properties\x00file\x00sdk.dir=/tmp/one\n\x00" +
		"path\x00ln\x00symlink\x00src/lib.rs\x00" +
		"path\x00new.txt\x00file\x00new\x00" +
		"path\x00openclaw/\x00dir\x00\x00file\x00openclaw/package.json\x00{}\n\x00" +
		"path\x00src/lib.rs\x00file\x00pub fn demo() -> u32 { 42 }\n\x00")
	if got := fingerprint(t, dir, ProfileFull); got != want {
		t.Errorf("changed tree: %s, want %s", got, want)
	}
	// The rust profile leaves out the root android/.
	wantRust := sha256Hex("git-head\x00" + head + "\x00" +
		"path\x00Cargo.toml\x00missing\x00\x00" +
		"path\x00ln\x00symlink\x00src/lib.rs\x00" +
		"path\x00new.txt\x00file\x00new\x00" +
		"path\x00openclaw/\x00dir\x00\x00file\x00openclaw/package.json\x00{}\n\x00" +
		"path\x00src/lib.rs\x00file\x00pub fn demo() -> u32 { 42 }\n\x00")
	if got := fingerprint(t, dir, ProfileRust); got != wantRust {
		t.Errorf("changed tree, rust profile: %s, want %s", got, wantRust)
	}
}

// The original's cases: what the snapshot leaves out does not change the
// fingerprint; an edit, an ignored but kept file and a nested checkout do.
func TestSourceFingerprintChanges(t *testing.T) {
	hermeticGit(t)
	dir := gitRepo(t, map[string]string{
		"Cargo.toml": "[package]\n", "src/lib.rs": "pub fn demo() {}\n",
		".gitignore": "android/local.properties\n", "android/local.properties": "sdk.dir=/tmp/one\n",
	})
	nested := filepath.Join(dir, "openclaw")
	writeTree(t, nested, map[string]string{"package.json": `{"name": "openclaw"}`})
	gitIn(t, nested, "init", "-q")
	gitIn(t, nested, "add", ".")
	gitIn(t, nested, "commit", "-q", "-m", "init")

	steps := []struct {
		name      string
		files     map[string]string
		profile   SnapshotProfile
		unchanged bool
	}{
		{"target", map[string]string{"target/stale.txt": "ignored"}, ProfileFull, true},
		{"nested node_modules", map[string]string{"web/node_modules/m": "x"}, ProfileFull, true},
		{"android for rust", map[string]string{"android/local.properties": "sdk.dir=/tmp/two\n"}, ProfileRust, true},
		{"android for full", map[string]string{"android/local.properties": "sdk.dir=/tmp/three\n"}, ProfileFull, false},
		{"edit", map[string]string{"src/lib.rs": "pub fn demo() -> u32 { 42 }\n"}, ProfileFull, false},
		{"nested checkout", map[string]string{"openclaw/package.json": `{"name": "openclaw-next"}`}, ProfileFull, false},
		{"root build", map[string]string{"build/out": "x"}, ProfileFull, false},
	}
	for _, s := range steps {
		before := fingerprint(t, dir, s.profile)
		writeTree(t, dir, s.files)
		after := fingerprint(t, dir, s.profile)
		if (before == after) != s.unchanged {
			t.Errorf("%s: fingerprint %s -> %s; unchanged = %v, want %v", s.name, before, after, before == after, s.unchanged)
		}
	}
}

// Outside a git work tree, and before the first commit, the fingerprint
// is the content hash.
func TestSourceFingerprintWithoutGit(t *testing.T) {
	hermeticGit(t)
	dir := goldenTree(t)
	t.Setenv("GIT_CEILING_DIRECTORIES", filepath.Dir(dir))
	if got := fingerprint(t, dir, ProfileFull); got != goldenHash {
		t.Errorf("no repository: %s, want the content hash %s", got, goldenHash)
	}
	gitIn(t, dir, "init", "-q")
	if got := fingerprint(t, dir, ProfileFull); got != goldenHash {
		t.Errorf("no commit: %s, want the content hash %s", got, goldenHash)
	}
	if _, err := SourceFingerprint(t.Context(), dir, "ios"); err == nil {
		t.Error("SourceFingerprint took an unknown profile")
	}
	t.Setenv("PATH", t.TempDir()) // no git at all
	if got := fingerprint(t, dir, ProfileFull); got != goldenHash {
		t.Errorf("no git: %s, want the content hash %s", got, goldenHash)
	}
}

func TestFingerprintDedupNested(t *testing.T) {
	in := []string{"openclaw/x", "a/c/d", "a-b", "a/b", "a", "openclaw/", "b/x", "a"}
	want := []string{"a", "a-b", "b/x", "openclaw/"}
	if got := dedupNested(in); !slices.Equal(got, want) {
		t.Errorf("dedupNested = %v, want %v", got, want)
	}
	for _, tt := range []struct {
		rel     string
		profile SnapshotProfile
		skip    bool
	}{
		{"build/x", ProfileFull, false}, {"a/build/x", ProfileFull, true}, {"a/build", ProfileFull, true},
		{"ios/x", ProfileFollowup, true}, {"a/ios/x", ProfileFollowup, false}, {"android/x", ProfileFollowup, false},
		{"android/x", ProfileRust, true}, {"a/target", ProfileFull, true}, {"openclaw/", ProfileFull, false},
	} {
		if got := skipsRelPath(tt.rel, tt.profile); got != tt.skip {
			t.Errorf("skipsRelPath(%q, %s) = %v, want %v", tt.rel, tt.profile, got, tt.skip)
		}
	}
}
