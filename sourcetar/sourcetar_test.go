package sourcetar

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
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

func TestPackRoundTrip(t *testing.T) {
	src := writeSourceTree(t, map[string]string{"README.md": "hi\n", "rust/src/lib.rs": "fn x() {}\n",
		".git/HEAD": "ref\n", "target/debug/x": "bin", "a/target/y": "bin"})
	if err := os.Symlink("README.md", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	var one, two bytes.Buffer
	if err := Pack(t.Context(), src, &one, nil); err != nil {
		t.Fatal(err)
	}
	if err := Pack(t.Context(), src, &two, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("packing the same tree twice gave different bytes")
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := Unpack(t.Context(), bytes.NewReader(one.Bytes()), dst, DefaultLimits()); err != nil {
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

func TestUnpackRefusesEscapes(t *testing.T) {
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
			err := Unpack(t.Context(), &buf, t.TempDir(), DefaultLimits())
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "outside the tree") {
				t.Errorf("Unpack(%q) = %v, want an outside-the-tree error", name, err)
			}
		})
	}
}

func TestPackOnly(t *testing.T) {
	src := writeSourceTree(t, map[string]string{"README.md": "hi\n", "rust/src/lib.rs": "x\n", "rust/big.bin": "junk",
		"build/out.o": "junk"})
	var buf bytes.Buffer
	if err := Pack(t.Context(), src, &buf, map[string]bool{"README.md": true, "rust/src/lib.rs": true, "gone.txt": true}); err != nil {
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

// tarEntry is one entry of a test tarball; typ 0 is a regular file.
type tarEntry struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

func makeTarball(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 && hdr.Typeflag != tar.TypeXGlobalHeader {
			hdr.Mode = 0o644
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeCont:
			hdr.Size = int64(len(e.body))
		case tar.TypeXGlobalHeader:
			hdr.PAXRecords = map[string]string{"comment": "metadata"}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if hdr.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackRefuses(t *testing.T) {
	outside := t.TempDir() // a host directory an archive must never reach
	tests := []struct {
		name    string
		entries []tarEntry
		want    string // the whole error text
	}{
		{"absolute symlink then a file through it",
			[]tarEntry{{name: "esc", typ: tar.TypeSymlink, link: outside}, {name: "esc/file", body: "pwned"}},
			`source refused: entry "esc": symlink to "` + outside + `" points outside the tree`},
		{"absolute symlink", []tarEntry{{name: "esc", typ: tar.TypeSymlink, link: "/etc"}},
			`source refused: entry "esc": symlink to "/etc" points outside the tree`},
		{"symlink to the parent", []tarEntry{{name: "up", typ: tar.TypeSymlink, link: ".."}},
			`source refused: entry "up": symlink to ".." points outside the tree`},
		{"relative symlink out", []tarEntry{{name: "a/b", typ: tar.TypeSymlink, link: "../../x"}},
			`source refused: entry "a/b": symlink to "../../x" points outside the tree`},
		{"chain through a link to the root",
			[]tarEntry{{name: "d", typ: tar.TypeSymlink, link: "."}, {name: "e", typ: tar.TypeSymlink, link: "d/.."}},
			`source refused: entry "e": symlink to "d/.." points outside the tree`},
		{"chain through a link to a parent",
			[]tarEntry{{name: "a/", typ: tar.TypeDir}, {name: "a/d", typ: tar.TypeSymlink, link: ".."},
				{name: "a/e", typ: tar.TypeSymlink, link: "d/../.."}},
			`source refused: entry "a/e": symlink to "d/../.." points outside the tree`},
		{"chain through two links",
			[]tarEntry{{name: "x/y/", typ: tar.TypeDir}, {name: "x/y/up", typ: tar.TypeSymlink, link: "../.."},
				{name: "x/top", typ: tar.TypeSymlink, link: "y/up"}, {name: "x/out", typ: tar.TypeSymlink, link: "top/../x"}},
			`source refused: entry "x/out": symlink to "top/../x" points outside the tree`},
		{"symlink loop", []tarEntry{{name: "p", typ: tar.TypeSymlink, link: "q/z"}, {name: "q", typ: tar.TypeSymlink, link: "p"}},
			`source refused: entry "p": symlink to "q/z" does not resolve within 40 links`},
		{"in-tree symlink then a file through it",
			[]tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, link: "d"}, {name: "l/f", body: "x"}},
			`source refused: entry "l/f": its parent "l" is a symlink`},
		{"directory through a symlink",
			[]tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, link: "d"}, {name: "l/sub/", typ: tar.TypeDir}},
			`source refused: entry "l/sub": its parent "l" is a symlink`},
		{"parent is a file", []tarEntry{{name: "f", body: "x"}, {name: "f/g", body: "y"}},
			`source refused: entry "f/g": its parent "f" is a file`},
		{"hard link", []tarEntry{{name: "a", body: "x"}, {name: "h", typ: tar.TypeLink, link: "a"}},
			`source refused: entry "h": hard links are not accepted`},
		{"character device", []tarEntry{{name: "dev/null", typ: tar.TypeChar}},
			`source refused: entry "dev/null": character devices are not accepted`},
		{"block device", []tarEntry{{name: "sda", typ: tar.TypeBlock}},
			`source refused: entry "sda": block devices are not accepted`},
		{"fifo", []tarEntry{{name: "pipe", typ: tar.TypeFifo}},
			`source refused: entry "pipe": FIFOs are not accepted`},
		{"other type", []tarEntry{{name: "c", typ: tar.TypeCont, body: "x"}},
			`source refused: entry "c": entries of type '7' are not accepted`},
		{"duplicate file", []tarEntry{{name: "a", body: "x"}, {name: "./a", body: "y"}},
			`source refused: entry "a": the tarball holds it more than once`},
		{"duplicate directory", []tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "d/", typ: tar.TypeDir}},
			`source refused: entry "d": the tarball holds it more than once`},
		{"file then symlink of the same name", []tarEntry{{name: "a", body: "x"}, {name: "a", typ: tar.TypeSymlink, link: "b"}},
			`source refused: entry "a": the tarball holds it more than once`},
		{"file over a directory of earlier entries", []tarEntry{{name: "a/b", body: "x"}, {name: "a", body: "y"}},
			`source refused: entry "a": earlier entries made it a directory`},
		{"empty symlink", []tarEntry{{name: "l", typ: tar.TypeSymlink}},
			`source refused: entry "l": the symlink has an empty target`},
		{"long component", []tarEntry{{name: strings.Repeat("n", 256), body: "x"}},
			`source refused: entry "` + strings.Repeat("n", 256) + `": a path component is longer than 255 bytes`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "tree")
			err := Unpack(t.Context(), bytes.NewReader(makeTarball(t, tc.entries...)), dst, DefaultLimits())
			if !errors.Is(err, ErrRefused) || errors.Is(err, ErrUnusable) || err.Error() != tc.want {
				t.Errorf("Unpack = %v\nwant %s", err, tc.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("the archive wrote %d entries outside the tree", len(ents))
			}
		})
	}
}

func TestUnpackKeeps(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "tree")
	tarball := makeTarball(t,
		tarEntry{name: "pax", typ: tar.TypeXGlobalHeader},
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "open/", typ: tar.TypeDir, mode: 0o777},
		tarEntry{name: "ro/", typ: tar.TypeDir, mode: 0o500},
		tarEntry{name: "ro/file", body: "in a read-only dir", mode: 0o444},
		tarEntry{name: "private", body: "secret", mode: 0o600},
		tarEntry{name: "suid", body: "#!/bin/sh", mode: 0o4755 | 0o2000 | 0o1000},
		tarEntry{name: "deep/er/file", body: "x"},
		tarEntry{name: "deep/up", typ: tar.TypeSymlink, link: "../private"},
		tarEntry{name: "self", typ: tar.TypeSymlink, link: "."},
		tarEntry{name: "via", typ: tar.TypeSymlink, link: "self/deep/er/../up"},
		tarEntry{name: "dangling", typ: tar.TypeSymlink, link: "nowhere/../x"},
		tarEntry{name: "through-file", typ: tar.TypeSymlink, link: "private/.."},
	)
	if err := Unpack(t.Context(), bytes.NewReader(tarball), dst, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{
		".": os.ModeDir | 0o755, "open": os.ModeDir | 0o755, "ro": os.ModeDir | 0o700 | 0o500, "ro/file": 0o444, "private": 0o600, "suid": 0o755,
		"deep": os.ModeDir | 0o755, "deep/er": os.ModeDir | 0o755, "deep/er/file": 0o644,
	}
	for name, want := range modes {
		if fi, err := os.Lstat(filepath.Join(dst, name)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}
	links := map[string]string{"deep/up": "../private", "self": ".", "via": "self/deep/er/../up",
		"dangling": "nowhere/../x", "through-file": "private/.."}
	for name, want := range links {
		if got, err := os.Readlink(filepath.Join(dst, name)); err != nil || got != want {
			t.Errorf("%s -> %q, %v; want %q", name, got, err, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "via")); err != nil || string(b) != "secret" {
		t.Errorf("via = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "pax")); !os.IsNotExist(err) {
		t.Errorf("the global PAX header became a file: %v", err)
	}
}

func TestUnpackLimits(t *testing.T) {
	files := func(n, size int) []tarEntry {
		var es []tarEntry
		for i := range n {
			es = append(es, tarEntry{name: fmt.Sprintf("f%d", i), body: strings.Repeat("x", size)})
		}
		return es
	}
	tests := []struct {
		name    string
		entries []tarEntry
		lim     Limits
		want    string // "" = no error
	}{
		{"entries at the bound", files(10, 1), Limits{MaxEntries: 10}, ""},
		{"entries over the bound", files(11, 1), Limits{MaxEntries: 10},
			"source refused: the tarball has more than 10 entries (--max-source-entries)"},
		{"directories count", append(files(9, 1), tarEntry{name: "d/", typ: tar.TypeDir}, tarEntry{name: "l", typ: tar.TypeSymlink, link: "d"}),
			Limits{MaxEntries: 10}, "source refused: the tarball has more than 10 entries (--max-source-entries)"},
		{"bytes at the bound", files(2, 500), Limits{MaxBytes: 1000}, ""},
		{"bytes over the bound across files", files(3, 500), Limits{MaxBytes: 1000},
			"source refused: the tarball unpacks to more than 1000 bytes (--max-source-bytes)"},
		{"one file over the bound", files(1, 1001), Limits{MaxBytes: 1000},
			"source refused: the tarball unpacks to more than 1000 bytes (--max-source-bytes)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Unpack(t.Context(), bytes.NewReader(makeTarball(t, tc.entries...)), t.TempDir(), tc.lim)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Unpack = %v", err)
			case tc.want != "" && (!errors.Is(err, ErrRefused) || err.Error() != tc.want):
				t.Errorf("Unpack = %v, want %s", err, tc.want)
			}
		})
	}
}

// TestUnpackStopsAGzipBomb feeds a file whose header claims 1 TiB of
// zeros, generated as it is read: unpacking must stop at the bound, with
// the disk usage and the bytes generated bounded.
func TestUnpackStopsAGzipBomb(t *testing.T) {
	const limit = 8 << 20
	pr, pw := io.Pipe()
	var produced atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		gz, _ := gzip.NewWriterLevel(pw, gzip.BestCompression)
		tw := tar.NewWriter(gz)
		if err := tw.WriteHeader(&tar.Header{Name: "bomb", Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o644}); err != nil {
			pw.CloseWithError(err)
			return
		}
		zeros := make([]byte, 64<<10)
		for {
			n, err := tw.Write(zeros)
			produced.Add(int64(n))
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	dst := t.TempDir()
	err := Unpack(t.Context(), pr, dst, Limits{MaxBytes: limit})
	pr.Close() // stops the generator
	<-done
	if want := "source refused: the tarball unpacks to more than 8388608 bytes (--max-source-bytes)"; !errors.Is(err, ErrRefused) || err.Error() != want {
		t.Errorf("Unpack = %v, want %s", err, want)
	}
	if used := diskUsage(t, dst); used > limit+1<<20 {
		t.Errorf("%d bytes on disk, want at most %d", used, limit+1<<20)
	}
	if n := produced.Load(); n > 4*limit {
		t.Errorf("read %d bytes of the stream, want it to stop near %d", n, limit)
	}
}

// diskUsage is the bytes the blocks of the files under dir take.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// failWriter fails every write with err, as a full disk does.
type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: "f", Err: w.err}
}
func (failWriter) Close() error { return nil }

// failReader gives some bytes, then fails as a broken disk or connection.
type failReader struct {
	r   io.Reader
	err error
}

func (f *failReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestUnpackClassifiesFailures(t *testing.T) {
	good := makeTarball(t, tarEntry{name: "a", body: strings.Repeat("a", 4096)}, tarEntry{name: "b", body: "b"})
	writeFails := func(errno syscall.Errno) createFunc {
		return func(*os.Root, string, fs.FileMode) (io.WriteCloser, error) { return failWriter{errno}, nil }
	}
	createFails := func(errno syscall.Errno) createFunc {
		return func(_ *os.Root, name string, _ fs.FileMode) (io.WriteCloser, error) {
			return nil, &fs.PathError{Op: "openat", Path: name, Err: errno}
		}
	}
	tests := []struct {
		name     string
		r        io.Reader
		create   createFunc
		errno    error // wrapped, when set
		unusable bool
	}{
		{"disk full on write", bytes.NewReader(good), writeFails(syscall.ENOSPC), syscall.ENOSPC, false},
		{"quota on write", bytes.NewReader(good), writeFails(syscall.EDQUOT), syscall.EDQUOT, false},
		{"disk full on create", bytes.NewReader(good), createFails(syscall.ENOSPC), syscall.ENOSPC, false},
		{"the reader fails", &failReader{r: bytes.NewReader(good[:len(good)/2]), err: syscall.EIO}, createInRoot, syscall.EIO, false},
		{"not gzip", strings.NewReader("plain text"), createInRoot, nil, true},
		{"truncated", bytes.NewReader(good[:len(good)/2]), createInRoot, nil, true},
		{"gzip of no tar", bytes.NewReader(gzipped(t, bytes.Repeat([]byte("junk"), 200))), createInRoot, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := unpackSource(t.Context(), tc.r, t.TempDir(), DefaultLimits(), tc.create)
			if err == nil {
				t.Fatal("Unpack succeeded")
			}
			if errors.Is(err, ErrRefused) || errors.Is(err, ErrUnusable) != tc.unusable {
				t.Errorf("Unpack = %v: refused %v, unusable %v; want refused false, unusable %v",
					err, errors.Is(err, ErrRefused), errors.Is(err, ErrUnusable), tc.unusable)
			}
			if tc.errno != nil && !errors.Is(err, tc.errno) {
				t.Errorf("Unpack = %v, want it to wrap %v", err, tc.errno)
			}
		})
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(b)
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Unpack(ctx, bytes.NewReader(makeTarball(t, tarEntry{name: "a", body: "x"})), t.TempDir(), Limits{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnusable) {
		t.Errorf("Unpack = %v, want %v", err, context.Canceled)
	}
}
