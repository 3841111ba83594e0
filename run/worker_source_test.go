package run

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSourceTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPackSourceRoundTrip(t *testing.T) {
	src := writeSourceTree(t, map[string]string{"README.md": "hi\n", "rust/src/lib.rs": "fn x() {}\n",
		".git/HEAD": "ref\n", "target/debug/x": "bin", "a/target/y": "bin"})
	if err := os.Symlink("README.md", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	var one, two bytes.Buffer
	if err := PackSource(t.Context(), src, &one, nil); err != nil {
		t.Fatal(err)
	}
	if err := PackSource(t.Context(), src, &two, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("packing the same tree twice gave different bytes")
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := UnpackSource(t.Context(), bytes.NewReader(one.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"README.md": "hi\n", "rust/src/lib.rs": "fn x() {}\n"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "README.md" {
		t.Errorf("link = %q, %v", l, err)
	}
	for _, skipped := range []string{".git", "target", "a/target"} {
		if _, err := os.Stat(filepath.Join(dst, skipped)); !os.IsNotExist(err) {
			t.Errorf("%s was packed", skipped)
		}
	}
}

func TestUnpackSourceRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/etc/evil", "a/../../evil"} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			tw := tar.NewWriter(gz)
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte("x"))
			tw.Close()
			gz.Close()
			err := UnpackSource(t.Context(), &buf, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), "outside the tree") {
				t.Errorf("UnpackSource(%q) = %v, want an outside-the-tree error", name, err)
			}
		})
	}
}

func TestFetchSourceErrors(t *testing.T) {
	cache := t.TempDir()
	store := memStore{"b/not-gzip": []byte("plain text")}
	tests := []struct {
		object, digest string
		want           error
	}{
		{"missing", strings.Repeat("a", 64), ErrSourceNotFound},
		{"not-gzip", strings.Repeat("b", 64), ErrSourceDigest},
	}
	for _, tc := range tests {
		_, err := fetchSource(t.Context(), store, cache, "b", tc.object, tc.digest)
		if err == nil || !strings.Contains(err.Error(), tc.want.Error()) {
			t.Errorf("fetchSource(%s) = %v, want %v", tc.object, err, tc.want)
		}
	}
}

func TestFetchSourceUnusable(t *testing.T) {
	body := []byte("plain text")
	store := memStore{"b/o": body}
	digest := sha256hex(body)
	_, err := fetchSource(t.Context(), store, t.TempDir(), "b", "o", digest)
	if err == nil || !strings.Contains(err.Error(), ErrSourceUnusable.Error()) {
		t.Errorf("fetchSource of a non-tarball = %v, want %v", err, ErrSourceUnusable)
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestPackSourceOnly(t *testing.T) {
	src := writeSourceTree(t, map[string]string{"README.md": "hi\n", "rust/src/lib.rs": "x\n", "rust/big.bin": "junk",
		"build/out.o": "junk"})
	var buf bytes.Buffer
	if err := PackSource(t.Context(), src, &buf, map[string]bool{"README.md": true, "rust/src/lib.rs": true, "gone.txt": true}); err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if want := []string{"README.md", "rust/src/lib.rs"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("packed %q, want %q", names, want)
	}
}
