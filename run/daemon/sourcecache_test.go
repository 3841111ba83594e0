package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// cacheEntry puts an entry of size bytes in c, last used at used; held
// keeps it in use until the test ends.
func cacheEntry(t *testing.T, c *SourceCache, digest string, size int, used time.Time, held bool) {
	t.Helper()
	_, release, err := c.fill(digest, "b", "o", func(tmp string) error {
		if err := os.MkdirAll(filepath.Join(tmp, "tree", "sub"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, "tree", "sub", "f"), make([]byte, size), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if held {
		t.Cleanup(release)
	} else {
		release()
	}
	if err := os.Chtimes(filepath.Join(c.Dir, digest, sourceMarkerName), used, used); err != nil {
		t.Fatal(err)
	}
}

func cacheNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if isDigest(n) {
			n = n[:1] // entries are named by a repeated letter
		}
		names = append(names, n)
	}
	return names
}

func TestSourceCachePrune(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	type entry struct {
		letter string
		size   int
		used   time.Duration // ago
		held   bool
	}
	tests := []struct {
		name     string
		maxAge   time.Duration
		maxBytes int64
		entries  []entry
		setup    func(t *testing.T, dir string)
		want     []string // what is left, sorted
	}{
		{name: "no bounds keep everything", entries: []entry{{"a", 100, 48 * time.Hour, false}, {"b", 100, 0, false}},
			want: []string{"a", "b"}},
		{name: "too old", maxAge: time.Hour, entries: []entry{{"a", 10, 2 * time.Hour, false}, {"b", 10, 10 * time.Minute, false}},
			want: []string{"b"}},
		{name: "too old but in use", maxAge: time.Hour, entries: []entry{{"a", 10, 2 * time.Hour, true}, {"b", 10, 3 * time.Hour, false}},
			want: []string{"a"}},
		{name: "least recently used first", maxBytes: 250,
			entries: []entry{{"a", 100, 2 * time.Minute, false}, {"b", 100, 3 * time.Minute, false}, {"c", 100, time.Minute, false}},
			want:    []string{"a", "c"}},
		{name: "until under the bound", maxBytes: 150,
			entries: []entry{{"a", 100, 2 * time.Minute, false}, {"b", 100, 3 * time.Minute, false}, {"c", 100, time.Minute, false}},
			want:    []string{"c"}},
		{name: "in use is never removed", maxBytes: 150,
			entries: []entry{{"a", 100, 3 * time.Minute, true}, {"b", 100, 2 * time.Minute, false}, {"c", 100, time.Minute, false}},
			want:    []string{"a"}},
		{name: "age, then size", maxAge: time.Hour, maxBytes: 150,
			entries: []entry{{"a", 10, 2 * time.Hour, false}, {"b", 100, 30 * time.Minute, false}, {"c", 100, time.Minute, false}},
			want:    []string{"c"}},
		{name: "fetches, stale entries and leftovers", maxAge: time.Hour,
			setup: func(t *testing.T, dir string) {
				for name, mtime := range map[string]time.Time{
					".fetch-young": ago(10 * time.Minute), ".fetch-old": ago(2 * time.Hour),
					".prune-left": ago(time.Minute), strings.Repeat("d", 64): ago(time.Minute), "unrelated": ago(48 * time.Hour),
				} {
					p := filepath.Join(dir, name)
					if err := os.MkdirAll(filepath.Join(p, "tree"), 0o755); err != nil {
						t.Fatal(err)
					}
					if name == strings.Repeat("d", 64) { // a marker of version 1
						if err := os.WriteFile(filepath.Join(p, sourceMarkerName), []byte("o\n"), 0o644); err != nil {
							t.Fatal(err)
						}
					}
					if err := os.Chtimes(p, mtime, mtime); err != nil {
						t.Fatal(err)
					}
				}
			},
			entries: []entry{{"a", 10, time.Minute, false}},
			want:    []string{".fetch-young", "a", "unrelated"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &SourceCache{Dir: t.TempDir(), MaxAge: tc.maxAge, MaxBytes: tc.maxBytes, Now: func() time.Time { return now }}
			for _, e := range tc.entries {
				cacheEntry(t, c, strings.Repeat(e.letter, 64), e.size, ago(e.used), e.held)
			}
			if tc.setup != nil {
				tc.setup(t, c.Dir)
			}
			if err := c.Prune(t.Context(), now); err != nil {
				t.Fatal(err)
			}
			got := cacheNames(t, c.Dir)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("left %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSourceCacheMarksUse(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := &SourceCache{Dir: t.TempDir(), MaxAge: time.Hour, Now: func() time.Time { return now }}
	digest := strings.Repeat("a", 64)
	cacheEntry(t, c, digest, 10, now.Add(-2*time.Hour), false)
	now = now.Add(time.Minute)
	tree, release, hit, err := c.acquire(digest)
	if err != nil || !hit || tree != filepath.Join(c.Dir, digest, "tree") {
		t.Fatalf("acquire = %q, %v, %v", tree, hit, err)
	}
	if fi, err := os.Stat(filepath.Join(c.Dir, digest, sourceMarkerName)); err != nil || !fi.ModTime().Equal(now) {
		t.Errorf("marker mtime = %v, %v; want %v", fi.ModTime(), err, now)
	}
	// Used now: not too old, and in use anyway until released.
	if err := c.Prune(t.Context(), now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree); err != nil {
		t.Fatalf("an entry in use was pruned: %v", err)
	}
	release()
	release() // twice is fine
	if err := c.Prune(t.Context(), now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a released old entry was kept: %v", err)
	}
	if _, _, hit, err := c.acquire(digest); hit || err != nil {
		t.Errorf("acquire after prune = %v, %v; want a miss", hit, err)
	}
}

func TestSourceCacheReplacesAStaleEntry(t *testing.T) {
	c := &SourceCache{Dir: t.TempDir()}
	digest := strings.Repeat("a", 64)
	stale := filepath.Join(c.Dir, digest)
	if err := os.MkdirAll(filepath.Join(stale, "tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, sourceMarkerName), []byte("o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, hit, err := c.acquire(digest); hit || err != nil {
		t.Fatalf("acquire of a stale entry = %v, %v; want a miss", hit, err)
	}
	tree, release, err := c.fill(digest, "b", "o", func(tmp string) error {
		return os.MkdirAll(filepath.Join(tmp, "tree", "fresh"), 0o755)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := os.Stat(filepath.Join(tree, "fresh")); err != nil {
		t.Errorf("the stale entry was not replaced: %v", err)
	}
}
