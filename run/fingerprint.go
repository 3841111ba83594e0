package run

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
)

// SourceFingerprint is the host-local cache key of the source tree dir as
// a snapshot with this profile would hold it (the original's source
// fingerprint, STAGED-AND-HOST.md §3.8). In a git work tree with a HEAD it
// is sha256 of
//
//	"git-head\0" HEAD "\0"
//
// then, for each path git reports as changed (`git diff --name-only
// --relative HEAD`, `git ls-files --others --exclude-standard`) or ignored
// (`git ls-files --others --ignored --exclude-standard`) that the profile
// keeps, sorted, a path below another one left out:
//
//	"path\0" rel "\0" then one of
//	  "symlink\0" target "\0"
//	  "file\0" bytes "\0"
//	  "dir\0\0" then its kept entries as in ContentHash
//	  "missing\0\0"
//
// Without git, outside a work tree or before the first commit it is
// ContentHash(dir, profile). Two differences from the original, both so
// that the key changes whenever the snapshot would: git's lists are read
// NUL-separated (-z), so a name git would quote is hashed as it is, and
// the diff runs with --no-renames, so a renamed file's old path counts as
// missing.
func SourceFingerprint(ctx context.Context, dir string, profile SnapshotProfile) (string, error) {
	if err := profile.valid(); err != nil {
		return "", err
	}
	fallback := func() (string, error) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		return ContentHash(dir, profile)
	}
	head, ok := gitOutput(ctx, dir, "rev-parse", "HEAD")
	head = strings.TrimSpace(head)
	if !ok || head == "" {
		return fallback()
	}
	var paths []string
	for _, args := range [][]string{
		{"diff", "--name-only", "--no-renames", "-z", "--relative", "HEAD", "--"},
		{"ls-files", "-z", "--others", "--exclude-standard"},
		{"ls-files", "-z", "--others", "--ignored", "--exclude-standard"},
	} {
		out, ok := gitOutput(ctx, dir, args...)
		if !ok {
			return fallback()
		}
		for _, p := range strings.Split(out, "\x00") {
			if p != "" && !skipsRelPath(p, profile) {
				paths = append(paths, p)
			}
		}
	}
	h := sha256.New()
	io.WriteString(h, "git-head\x00"+head+"\x00")
	w := &treeWalk{ctx: ctx, profile: profile, h: h}
	for _, rel := range dedupNested(paths) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if err := w.fingerprintEntry(dir, rel); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fingerprintEntry hashes one path git reported, rel as git wrote it (a
// nested repository's with a trailing slash).
func (w *treeWalk) fingerprintEntry(dir, rel string) error {
	io.WriteString(w.h, "path\x00"+rel+"\x00")
	path := dir + "/" + rel // as the original joins: a trailing slash stays
	info, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		io.WriteString(w.h, "missing\x00\x00")
		return nil
	case err != nil:
		return err
	}
	mode := info.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		link, err := os.Readlink(path)
		if err != nil {
			return err
		}
		io.WriteString(w.h, "symlink\x00"+link+"\x00")
		return nil
	case mode.IsRegular():
		io.WriteString(w.h, "file\x00")
		err := hashFile(path, w.h)
		io.WriteString(w.h, "\x00")
		return err
	case mode.IsDir():
		io.WriteString(w.h, "dir\x00\x00")
		return w.walk(path, strings.TrimSuffix(rel, "/"), false)
	}
	return fmt.Errorf("unsupported filesystem entry: %s is a %s", path, fileKind(mode))
}

// relComponents are the names of a slash-separated relative path, without
// empty and "." ones.
func relComponents(rel string) []string {
	var out []string
	for _, c := range strings.Split(rel, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// skipsRelPath reports whether a snapshot with this profile leaves out the
// path rel (below the root) or one of its parents.
func skipsRelPath(rel string, profile SnapshotProfile) bool {
	root := true
	for _, c := range relComponents(rel) {
		if c == ".." {
			continue
		}
		if profile.skips(c, root) {
			return true
		}
		root = false
	}
	return false
}

// dedupNested drops the paths below another one of paths (by components,
// so a/b is below a but not below a-b) and duplicates, and sorts the rest
// as strings.
func dedupNested(paths []string) []string {
	comps := make(map[string][]string, len(paths))
	for _, p := range paths {
		comps[p] = relComponents(p)
	}
	sort.Slice(paths, func(i, j int) bool { // component order: a parent first
		a, b := comps[paths[i]], comps[paths[j]]
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return paths[i] < paths[j]
	})
	// A path and those below it are one run in component order.
	var out []string
	var last []string
	for _, p := range paths {
		c := comps[p]
		if last != nil && len(last) <= len(c) && slices.Equal(last, c[:len(last)]) {
			continue
		}
		last = c
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// gitOutput runs git in dir; ok is false when it cannot run or fails.
// It takes no optional locks: the user's own git commands keep working.
func gitOutput(ctx context.Context, dir string, args ...string) (string, bool) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", false
	}
	return out.String(), true
}
