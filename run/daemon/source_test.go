package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"jerichoci/sourcetar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestFetchSourceErrors(t *testing.T) {
	cache := &SourceCache{Dir: t.TempDir()}
	store := memStore{"b/not-gzip": []byte("plain text")}
	tests := []struct {
		object, digest string
		want           error
	}{
		{"missing", strings.Repeat("a", 64), ErrSourceNotFound},
		{"not-gzip", strings.Repeat("b", 64), ErrSourceDigest},
		{"not-gzip", "../../etc", ErrSourceDigest},
	}
	for _, tc := range tests {
		_, release, err := fetchSource(t.Context(), store, cache, sourcetar.Limits{}, "b", tc.object, tc.digest)
		release()
		if !errors.Is(err, tc.want) {
			t.Errorf("fetchSource(%s, %s) = %v, want %v", tc.object, tc.digest, err, tc.want)
		}
	}
}

func TestFetchSourceUnusable(t *testing.T) {
	body := []byte("plain text")
	store := memStore{"b/o": body}
	digest := sha256hex(body)
	_, _, err := fetchSource(t.Context(), store, &SourceCache{Dir: t.TempDir()}, sourcetar.Limits{}, "b", "o", digest)
	if !errors.Is(err, sourcetar.ErrUnusable) || errors.Is(err, sourcetar.ErrRefused) {
		t.Errorf("fetchSource of a non-tarball = %v, want %v", err, sourcetar.ErrUnusable)
	}
}

func TestObjectDigestHex(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	want := hex.EncodeToString(sum[:])
	tests := []struct{ in, want string }{
		{"SHA-256=" + base64.URLEncoding.EncodeToString(sum[:]), want},
		{"SHA-256=" + base64.RawURLEncoding.EncodeToString(sum[:]), want},
		{"SHA-256=" + base64.StdEncoding.EncodeToString(sum[:]), want},
		{"", ""},
		{"SHA-512=" + base64.URLEncoding.EncodeToString(sum[:]), ""},
		{"SHA-256=" + base64.URLEncoding.EncodeToString(sum[:16]), ""},
		{"SHA-256=!!", ""},
	}
	for _, tc := range tests {
		if got := objectDigestHex(tc.in); got != tc.want {
			t.Errorf("objectDigestHex(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// countingStore is a memStore that counts downloads and may describe its
// objects other than they are.
type countingStore struct {
	memStore
	mu    sync.Mutex
	opens int
	stat  func(ObjectInfo) ObjectInfo // rewrites Stat's answer, when set
}

func (s *countingStore) Open(ctx context.Context, bucket, object string) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opens++
	s.mu.Unlock()
	return s.memStore.Open(ctx, bucket, object)
}

func (s *countingStore) Stat(ctx context.Context, bucket, object string) (ObjectInfo, error) {
	info, err := s.memStore.Stat(ctx, bucket, object)
	if err == nil && s.stat != nil {
		info = s.stat(info)
	}
	return info, err
}

func (s *countingStore) openCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens
}

func TestFetchSourceAsksTheStoreFirst(t *testing.T) {
	tarball := packTree(t, map[string]string{"README.md": "hi\n"}, nil)
	digest := sha256hex(tarball)
	refused := packTree(t, nil, map[string]string{"esc": "/etc"})
	tests := []struct {
		name      string
		objects   map[string][]byte
		stat      func(ObjectInfo) ObjectInfo
		lim       sourcetar.Limits
		digest    string
		cached    bool // fetched once before, while the object was there
		want      error
		wantText  string // a part of the error
		downloads int
	}{
		{name: "first fetch", digest: digest, downloads: 1},
		{name: "cache hit", digest: digest, cached: true, downloads: 1},
		{name: "cache hit of a deleted object", objects: map[string][]byte{}, digest: digest, cached: true,
			want: ErrSourceNotFound, downloads: 1},
		{name: "stored digest differs", digest: digest, stat: func(i ObjectInfo) ObjectInfo { i.SHA256 = strings.Repeat("0", 64); return i },
			want: ErrSourceDigest, wantText: "sha256 is " + strings.Repeat("0", 64)},
		{name: "stored digest differs from a cached tree", digest: digest, cached: true,
			stat: func(i ObjectInfo) ObjectInfo { i.SHA256 = strings.Repeat("0", 64); return i }, want: ErrSourceDigest, downloads: 1},
		{name: "unknown stored digest", digest: digest, stat: func(i ObjectInfo) ObjectInfo { i.SHA256 = ""; return i }, downloads: 1},
		{name: "too large", digest: digest, lim: sourcetar.Limits{MaxBytes: 10}, want: sourcetar.ErrRefused,
			wantText: fmt.Sprintf("source refused: object o in b is %d bytes, more than 10 (--max-source-bytes)", len(tarball))},
		{name: "larger than the store says", digest: digest, lim: sourcetar.Limits{MaxBytes: 10},
			stat: func(i ObjectInfo) ObjectInfo { i.Size = 5; return i }, want: sourcetar.ErrRefused,
			wantText: "source refused: object o in b is more than 10 bytes (--max-source-bytes)", downloads: 1},
		{name: "refused tree", objects: map[string][]byte{"b/o": refused}, digest: sha256hex(refused), want: sourcetar.ErrRefused,
			wantText: `source refused: entry "esc": symlink to "/etc" points outside the tree (object o in b)`, downloads: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := &countingStore{memStore: memStore{"b/o": tarball}}
			cache := &SourceCache{Dir: t.TempDir()}
			if tc.cached {
				_, release, err := fetchSource(t.Context(), store, cache, tc.lim, "b", "o", tc.digest)
				if err != nil {
					t.Fatal(err)
				}
				release()
			}
			if tc.objects != nil {
				store.memStore = tc.objects
			}
			store.stat = tc.stat
			dir, release, err := fetchSource(t.Context(), store, cache, tc.lim, "b", "o", tc.digest)
			defer release()
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("fetchSource = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("fetchSource = %v, want it to say %q", err, tc.wantText)
			}
			if err != nil && errors.Is(err, sourcetar.ErrRefused) && errors.Is(err, sourcetar.ErrUnusable) {
				t.Errorf("fetchSource = %v: refused and unusable at once", err)
			}
			if err == nil {
				if b, rerr := os.ReadFile(filepath.Join(dir, "README.md")); rerr != nil || string(b) != "hi\n" {
					t.Errorf("README.md = %q, %v", b, rerr)
				}
			}
			if n := store.openCount(); n != tc.downloads {
				t.Errorf("%d downloads, want %d", n, tc.downloads)
			}
			if ents, _ := os.ReadDir(cache.Dir); err != nil && !tc.cached && len(ents) != 0 {
				t.Errorf("a failed fetch left %d entries in the cache", len(ents))
			}
		})
	}
}

func TestFetchSourceConcurrently(t *testing.T) {
	tarball := packTree(t, map[string]string{"README.md": "hi\n"}, nil)
	digest := sha256hex(tarball)
	store := &countingStore{memStore: memStore{"b/o": tarball}}
	cache := &SourceCache{Dir: t.TempDir()}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			dir, release, err := fetchSource(t.Context(), store, cache, sourcetar.Limits{}, "b", "o", digest)
			if err == nil {
				_, err = os.Stat(filepath.Join(dir, "README.md"))
			}
			release()
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ents, err := os.ReadDir(cache.Dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != digest {
		t.Errorf("cache holds %v, %v; want the one entry %s", ents, err, digest)
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// packTree packs a tree of files and symlinks with sourcetar.Pack.
func packTree(t *testing.T, files, links map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := sourcetar.Pack(t.Context(), dir, &buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
