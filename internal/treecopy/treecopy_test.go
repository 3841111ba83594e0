package treecopy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// entry is one path of a test tree: a file with content, a directory, or a
// symlink; mode is applied once the whole tree is written, deepest first.
type entry struct {
	path    string
	content string // a file's bytes
	link    string // a symlink's target
	dir     bool
	mode    fs.FileMode
	noPerm  bool // mode 0o000 (a zero mode is left as written)
}

func build(t *testing.T, root string, tree []entry) {
	t.Helper()
	for _, e := range tree {
		p := filepath.Join(root, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case e.dir:
			err = os.MkdirAll(p, 0o755)
		case e.link != "":
			err = os.Symlink(e.link, p)
		default:
			err = os.WriteFile(p, []byte(e.content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := len(tree) - 1; i >= 0; i-- {
		if e := tree[i]; (e.mode != 0 || e.noPerm) && e.link == "" {
			if err := os.Chmod(filepath.Join(root, e.path), e.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// want is what a copied path must be: its mode (type and all bits, as
// Lstat gives it), a symlink's target, whether it is the source's inode.
type want struct {
	mode   fs.FileMode
	link   string
	linked bool
}

func TestCopy(t *testing.T) {
	src := func(tree ...entry) []entry { return tree }
	tests := []struct {
		name    string
		tree    []entry
		rootMod fs.FileMode
		opt     Options
		want    map[string]want // paths below dst
		absent  []string
	}{
		{
			name: "modes and symlinks kept",
			tree: src(
				entry{path: "run.sh", content: "#!/bin/sh\n", mode: 0o750},
				entry{path: "private", content: "p", mode: 0o600},
				entry{path: "none", content: "n", noPerm: true},
				entry{path: "ro", dir: true, mode: 0o555},
				entry{path: "ro/f", content: "f", mode: 0o444},
				entry{path: "link", link: "run.sh"},
				entry{path: "dangling", link: "/nonexistent/target"},
			),
			rootMod: 0o750,
			want: map[string]want{
				".":        {mode: fs.ModeDir | 0o750},
				"run.sh":   {mode: 0o750},
				"private":  {mode: 0o600},
				"none":     {mode: 0o000},
				"ro":       {mode: fs.ModeDir | 0o555},
				"ro/f":     {mode: 0o444},
				"link":     {mode: fs.ModeSymlink | 0o777, link: "run.sh"},
				"dangling": {mode: fs.ModeSymlink | 0o777, link: "/nonexistent/target"},
			},
		},
		{
			name: "setuid, setgid and sticky never survive",
			tree: src(
				entry{path: "suid", content: "s", mode: 0o755 | fs.ModeSetuid | fs.ModeSetgid},
				entry{path: "shared", dir: true, mode: 0o775 | fs.ModeSetgid},
				entry{path: "tmp", dir: true, mode: 0o777 | fs.ModeSticky},
			),
			rootMod: 0o755 | fs.ModeSticky,
			want: map[string]want{
				".":      {mode: fs.ModeDir | 0o755},
				"suid":   {mode: 0o755},
				"shared": {mode: fs.ModeDir | 0o775},
				"tmp":    {mode: fs.ModeDir | 0o777},
			},
		},
		{
			name: "links where it may, copies a file with a dropped bit",
			tree: src(
				entry{path: "a/f", content: "f", mode: 0o640},
				entry{path: "suid", content: "s", mode: 0o755 | fs.ModeSetuid},
				entry{path: "l", link: "a/f"},
			),
			opt: Options{Link: true},
			want: map[string]want{
				"a/f":  {mode: 0o640, linked: true},
				"suid": {mode: 0o755},
				"l":    {mode: fs.ModeSymlink | 0o777, link: "a/f"},
			},
		},
		{
			name: "skip at the root or everywhere",
			tree: src(
				entry{path: ".git/HEAD", content: "ref"},
				entry{path: "sub/.git/HEAD", content: "ref"},
				entry{path: "build/kept", content: "a root build/ is kept"},
				entry{path: "sub/build/x", content: "a nested one is not"},
				entry{path: "sub/keep", content: "k"},
			),
			opt: Options{Skip: func(name string, root bool) bool {
				return name == ".git" || name == "build" && !root
			}},
			want:   map[string]want{"build/kept": {mode: 0o644}, "sub/keep": {mode: 0o644}},
			absent: []string{".git", "sub/.git", "sub/build"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := filepath.Join(t.TempDir(), "src")
			build(t, s, tc.tree)
			if tc.rootMod != 0 {
				if err := os.Chmod(s, tc.rootMod); err != nil {
					t.Fatal(err)
				}
			}
			d := filepath.Join(t.TempDir(), "parent", "dst")
			if err := Copy(t.Context(), s, d, tc.opt); err != nil {
				t.Fatal(err)
			}
			for p, w := range tc.want {
				fi, err := os.Lstat(filepath.Join(d, p))
				if err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				if fi.Mode() != w.mode {
					t.Errorf("%s: mode %v, want %v", p, fi.Mode(), w.mode)
				}
				if w.link != "" {
					if got, err := os.Readlink(filepath.Join(d, p)); err != nil || got != w.link {
						t.Errorf("%s: readlink = %q, %v; want %q", p, got, err, w.link)
					}
				}
				if fi.Mode().IsRegular() {
					si, err := os.Lstat(filepath.Join(s, p))
					if err != nil {
						t.Fatal(err)
					}
					if os.SameFile(fi, si) != w.linked {
						t.Errorf("%s: linked to its source = %v, want %v", p, !w.linked, w.linked)
					}
				}
			}
			for _, p := range tc.absent {
				if _, err := os.Lstat(filepath.Join(d, p)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: copied (%v), want it left out", p, err)
				}
			}
		})
	}
}

// A link the filesystem refuses (another filesystem, protected_hardlinks)
// becomes a copy with its source's mode and bytes.
func TestLinkFallsBackToACopy(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EXDEV, syscall.EPERM} {
		t.Run(errno.Error(), func(t *testing.T) {
			saved := link
			t.Cleanup(func() { link = saved })
			link = func(oldname, newname string) error {
				return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: errno}
			}
			s, d := t.TempDir(), filepath.Join(t.TempDir(), "dst")
			build(t, s, []entry{{path: "x", content: "bytes", mode: 0o777}}) // whatever the umask
			if err := Copy(t.Context(), s, d, Options{Link: true}); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(d, "x"))
			if err != nil || fi.Mode() != 0o777 {
				t.Fatalf("copy: %v, %v; want mode 0777", fi, err)
			}
			if b, _ := os.ReadFile(filepath.Join(d, "x")); string(b) != "bytes" {
				t.Errorf("copy holds %q", b)
			}
			si, _ := os.Stat(filepath.Join(s, "x"))
			if os.SameFile(fi, si) {
				t.Error("still a link")
			}
		})
	}
	t.Run("another error", func(t *testing.T) {
		saved := link
		t.Cleanup(func() { link = saved })
		link = func(string, string) error { return syscall.EIO }
		s := t.TempDir()
		build(t, s, []entry{{path: "x", content: "x"}})
		if err := Copy(t.Context(), s, filepath.Join(t.TempDir(), "dst"), Options{Link: true}); !errors.Is(err, syscall.EIO) {
			t.Errorf("Copy = %v, want the link's EIO", err)
		}
	})
}

func TestCopyRefuses(t *testing.T) {
	t.Parallel()
	fifo := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifo, "p"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, src, want string }{
		{"a FIFO", fifo, "unsupported filesystem entry: " + filepath.Join(fifo, "p") + " is a FIFO"},
		{"a file for a tree", file, "copy tree " + file + ": not a directory"},
	} {
		err := Copy(t.Context(), tc.src, filepath.Join(t.TempDir(), "dst"), Options{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: Copy = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// Exclude leaves out the paths it names, and a dst inside src is never
// copied into itself.
func TestCopyExcludes(t *testing.T) {
	t.Parallel()
	s := t.TempDir()
	build(t, s, []entry{{path: "state/runs/x", content: "x"}, {path: "kept", content: "k"}})
	d := filepath.Join(s, "out", "dst")
	if err := Copy(t.Context(), s, d, Options{Exclude: []string{filepath.Join(s, "state")}}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"kept": true, "state": false, "out": true, "out/dst": false} {
		_, err := os.Lstat(filepath.Join(d, p))
		if got := err == nil; got != want {
			t.Errorf("%s: copied = %v, want %v", p, got, want)
		}
	}
}

// Finish runs with every entry in and before the modes: a read-only
// root still takes the file it writes.
func TestFinishBeforeModes(t *testing.T) {
	t.Parallel()
	s := t.TempDir()
	build(t, s, []entry{{path: "f", content: "f"}})
	if err := os.Chmod(s, 0o555); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(t.TempDir(), "dst")
	seen := false
	err := Copy(t.Context(), s, d, Options{Finish: func() error {
		_, err := os.Stat(filepath.Join(d, "f"))
		seen = err == nil
		return os.WriteFile(filepath.Join(d, "done"), nil, 0o644)
	}})
	if err != nil || !seen {
		t.Fatalf("Copy = %v, entries in before Finish = %v", err, seen)
	}
	if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("dst: %v, %v; want mode 0555", fi, err)
	}
}

func TestHash(t *testing.T) {
	t.Parallel()
	tree := []entry{
		{path: "b", content: "bee"},
		{path: "a/f", content: "x"},
		{path: "a/l", link: "f"},
		{path: "skipped/f", content: "not hashed"},
	}
	skip := func(name string, root bool) bool { return root && name == "skipped" }
	s := t.TempDir()
	build(t, s, tree)

	// The description, entry by entry, as the package doc gives it.
	var desc bytes.Buffer
	if err := Hash(t.Context(), s, Options{Skip: skip, Hash: &desc}); err != nil {
		t.Fatal(err)
	}
	if want := "dir\x00a\x00file\x00a/f\x00x\x00symlink\x00a/l\x00f\x00file\x00b\x00bee\x00"; desc.String() != want {
		t.Fatalf("description = %q, want %q", desc.String(), want)
	}

	sum := func(dir string, opt Options, copyTo string) string {
		t.Helper()
		h := sha256.New()
		opt.Hash, opt.Skip = h, skip
		var err error
		if copyTo == "" {
			err = Hash(t.Context(), dir, opt)
		} else {
			err = Copy(t.Context(), dir, copyTo, opt)
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(h.Sum(nil))
	}
	ref := sum(s, Options{}, "")
	copied, linked := filepath.Join(t.TempDir(), "c"), filepath.Join(t.TempDir(), "l")
	for name, got := range map[string]string{
		"again":              sum(s, Options{}, ""),
		"while copying":      sum(s, Options{}, copied),
		"while linking":      sum(s, Options{Link: true}, linked),
		"of the copy":        sum(copied, Options{}, ""),
		"of the linked copy": sum(linked, Options{}, ""),
	} {
		if got != ref {
			t.Errorf("hash %s differs from the source's", name)
		}
	}
	if err := os.Chmod(filepath.Join(s, "b"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sum(s, Options{}, "") != ref {
		t.Error("a mode change changed the hash")
	}
	for name, change := range map[string]func(string) error{
		"content": func(d string) error { return os.WriteFile(filepath.Join(d, "b"), []byte("bea"), 0o644) },
		"link": func(d string) error {
			os.Remove(filepath.Join(d, "a/l"))
			return os.Symlink("g", filepath.Join(d, "a/l"))
		},
		"name":    func(d string) error { return os.Rename(filepath.Join(d, "b"), filepath.Join(d, "c")) },
		"new dir": func(d string) error { return os.Mkdir(filepath.Join(d, "e"), 0o755) },
	} {
		d := filepath.Join(t.TempDir(), "d")
		if err := Copy(t.Context(), s, d, Options{Skip: skip}); err != nil {
			t.Fatal(err)
		}
		if err := change(d); err != nil {
			t.Fatal(err)
		}
		if sum(d, Options{}, "") == ref {
			t.Errorf("changed %s: hash unchanged", name)
		}
	}
	if err := Hash(t.Context(), s, Options{}); err == nil || !strings.Contains(err.Error(), "Options.Hash") {
		t.Errorf("Hash without a writer = %v", err)
	}
}
