package executor

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"jerichoci/internal/atomicfile"
	"jerichoci/internal/mask"
)

// Transfer is how a job's files reach its guest (docs/INCUS.md, "Files
// in and out: mounts or the API").
type Transfer string

const (
	// TransferMounts shows host directories in the guest as disk devices:
	// incusd must see the worker's filesystem (the same host).
	TransferMounts Transfer = "mounts"
	// TransferAPI copies them in through the Incus API, one archive per
	// instance and phase: incusd may be anywhere.
	TransferAPI Transfer = "api"
)

// Valid reports whether t is a known transfer; "" is TransferMounts.
func (t Transfer) Valid() bool { return t == "" || t == TransferMounts || t == TransferAPI }

// api reports whether files go through the Incus API.
func (t Transfer) api() bool { return t == TransferAPI }

// ArchiveMover is what a Backend offers to move many files in one round
// trip each way: the Incus adapter implements it with `tar` in the guest.
// TransferAPI needs it; artifacts use it where the backend has it.
type ArchiveMover interface {
	// PushArchive unpacks the tar stream r at / in the instance, owners
	// and modes as the archive says.
	PushArchive(ctx context.Context, name string, r io.Reader) error
	// PullArchive writes a tar stream of the regular files among names
	// (relative to dir) that exist in the instance to w; a missing name
	// is left out. An error wrapping ErrNoArchiver says the guest cannot
	// make one (no shell or tar): the caller pulls file by file.
	PullArchive(ctx context.Context, name, dir string, names []string, w io.Writer) error
}

// ErrNoArchiver says the guest lacks what an archive needs.
var ErrNoArchiver = fmt.Errorf("the guest has no sh or tar")

// guestNobody is the owner of what TransferAPI copies in: the overflow
// uid and gid, which is how an unprivileged container sees the host
// root's files on an unshifted disk device (TransferMounts).
const guestNobody = 65534

// archiveMoverOf returns the backend's archive mover, or an error naming
// the transfer that needs it.
func archiveMoverOf(be Backend) (ArchiveMover, error) {
	m, ok := be.(ArchiveMover)
	if !ok {
		return nil, fmt.Errorf("transfer %q: the Incus backend %T cannot move archives", TransferAPI, be)
	}
	return m, nil
}

// pushDisks copies what the disks would show into the instance, at the
// same guest paths, as one archive: a disk whose (resolved) source lies
// inside another disk's source becomes hard links to that copy (a staged
// payload mount within its closure), any other is copied whole. What is
// copied is owned by guestNobody and keeps its permission bits (setuid,
// setgid and sticky bits dropped, as internal/treecopy does).
func pushDisks(ctx context.Context, be Backend, name string, disks []Disk) error {
	if len(disks) == 0 {
		return nil
	}
	m, err := archiveMoverOf(be)
	if err != nil {
		return err
	}
	plan, err := planDisks(disks)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeDisks(ctx, pw, plan)) }()
	err = m.PushArchive(ctx, name, pr)
	pr.CloseWithError(fmt.Errorf("archive not read to its end"))
	if err != nil {
		return fmt.Errorf("copy %d host paths into %s: %w", len(disks), name, err)
	}
	return nil
}

// diskCopy is one disk of an archive: copied whole, or (linkTo set) as
// links into the copy of the disk whose guest path is linkTo.
type diskCopy struct {
	source, guest string // resolved host path, guest path
	linkTo        string // guest path of the same content, already in the archive
}

// planDisks orders the disks: whole copies first (by guest path), then
// those inside another's source, each pointed at its copy.
func planDisks(disks []Disk) ([]diskCopy, error) {
	var whole, inner []diskCopy
	resolved := make([]string, len(disks))
	for i, d := range disks {
		r, err := filepath.EvalSymlinks(d.Source)
		if err != nil {
			return nil, fmt.Errorf("resolve %s (device %s): %w", d.Source, d.Name, err)
		}
		resolved[i] = r
	}
	for i, d := range disks {
		var outer *Disk
		var outerSrc string
		for k := range disks {
			if k != i && within(resolved[i], resolved[k]) && (outer == nil || len(resolved[k]) > len(outerSrc)) {
				outer, outerSrc = &disks[k], resolved[k]
			}
		}
		c := diskCopy{source: resolved[i], guest: d.Path}
		if outer != nil && !within(outerSrc, resolved[i]) {
			rel, _ := filepath.Rel(outerSrc, resolved[i])
			c.linkTo = path.Join(outer.Path, filepath.ToSlash(rel))
			inner = append(inner, c)
			continue
		}
		whole = append(whole, c)
	}
	sort.Slice(whole, func(a, b int) bool { return whole[a].guest < whole[b].guest })
	return append(whole, inner...), nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// writeDisks writes the planned disks as a tar stream.
func writeDisks(ctx context.Context, w io.Writer, plan []diskCopy) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, c := range plan {
		if err := writeTree(ctx, tw, c, dirs); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeTree writes one disk: its parents as directories (once per
// archive, root's, 0755), then its tree
// (walked in name order, symlinks kept, never followed).
func writeTree(ctx context.Context, tw *tar.Writer, c diskCopy, dirs map[string]bool) error {
	guestRoot := strings.TrimPrefix(path.Clean(c.guest), "/")
	for _, dir := range parents(guestRoot) {
		if dirs[dir] {
			continue
		}
		dirs[dir] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}); err != nil {
			return err
		}
	}
	return filepath.WalkDir(c.source, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(c.source, p)
		if err != nil {
			return err
		}
		name := path.Join(guestRoot, filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), Uid: guestNobody, Gid: guestNobody, ModTime: fi.ModTime()}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
			return tw.WriteHeader(h)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
			return tw.WriteHeader(h)
		case fi.Mode().IsRegular() && c.linkTo != "":
			h.Typeflag = tar.TypeLink
			h.Linkname = strings.TrimPrefix(path.Join(c.linkTo, filepath.ToSlash(rel)), "/")
			return tw.WriteHeader(h)
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, io.LimitReader(f, fi.Size())); err != nil {
				return fmt.Errorf("archive %s: %w", p, err)
			}
			return nil
		}
		return fmt.Errorf("archive %s: not a regular file, directory or symlink (%s)", p, fi.Mode().Type())
	})
}

// parents are the directories above a slash-separated relative path, top first.
func parents(rel string) []string {
	var out []string
	for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}

// writeGuestRequest puts the request where a pool instance's runner,
// started ahead, waits for it: written under another name and renamed,
// in one exec, so the runner never reads half of it.
func writeGuestRequest(ctx context.Context, be Backend, name string, req []byte) error {
	const script = `set -e; mkdir -p "$1"; printf '%s' "$0" > "$1/.guest-request.json.part"; mv -f "$1/.guest-request.json.part" "$2"`
	var stderr strings.Builder
	code, err := be.Exec(ctx, name, ExecRequest{Command: []string{"sh", "-c", script, string(req), PoolRequestGuestDir, PoolRequestGuestPath}, Cwd: "/"},
		io.Discard, &limitedBuilder{b: &stderr, max: 4096})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("write %s: sh exited with %d: %s", PoolRequestGuestPath, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// limitedBuilder keeps the first max bytes written to it.
type limitedBuilder struct {
	b   *strings.Builder
	max int
}

func (l *limitedBuilder) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// artifactNames are the guest's artifacts below GuestDir, pulled in this
// order: the guest's own log, then the small files, result.json last.
var artifactNames = []string{"logs/guest.log", "events.jsonl", "status.json", "result.json"}

// pulled is what one archive of the artifacts brought: each small file
// (by its name below GuestDir) that came whole, and whether guest.log did.
type pulled struct {
	small    map[string][]byte
	guestLog bool
}

// pullArtifacts takes the artifacts out of the guest as one archive (one
// exec): guest.log streamed, masked, to artifacts/guest.log (replacing
// the live one only once complete), each small file held (at most
// smallArtifactLimit). An entry that is not a regular file of those
// names is refused. err is the archive's failure, if any: what came
// before it is kept.
func (j *jobRun) pullArtifacts(ctx context.Context, m ArchiveMover, artifacts string) (pulled, error) {
	got := pulled{small: map[string][]byte{}}
	pr, pw := io.Pipe()
	read := make(chan error, 1)
	go func() {
		err := j.readArtifacts(pr, artifacts, &got)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // the padding after the end
		}
		pr.CloseWithError(fmt.Errorf("artifact archive: %v", err))
		read <- err
	}()
	err := m.PullArchive(ctx, j.name, GuestDir, artifactNames, pw)
	pw.CloseWithError(err) // nil: io.EOF for the reader
	if rerr := <-read; rerr != nil {
		return got, rerr
	}
	return got, err
}

// readArtifacts reads the archive's entries.
func (j *jobRun) readArtifacts(r io.Reader, artifacts string, got *pulled) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the artifact archive: %w", err)
		}
		name := path.Clean(h.Name)
		known := false
		for _, n := range artifactNames {
			known = known || n == name
		}
		if !known || h.Typeflag != tar.TypeReg {
			return fmt.Errorf("the artifact archive holds %q (type %q), not one of the guest's artifacts as a regular file", h.Name, h.Typeflag)
		}
		if name == "logs/guest.log" {
			if err := j.saveGuestLog(tr, artifacts); err != nil {
				return err
			}
			got.guestLog = true
			continue
		}
		if h.Size > smallArtifactLimit {
			return artifactTooLarge(name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("read the artifact archive: %w", err)
		}
		got.small[name] = b
	}
}

// artifactTooLarge is the error of a small artifact (name, under
// GuestDir) over smallArtifactLimit, however it was read.
func artifactTooLarge(name string) error {
	return fmt.Errorf("guest path `%s`: file is larger than the limit of %d bytes", GuestDir+"/"+name, smallArtifactLimit)
}

// saveGuestLog writes the guest's log, masked, to artifacts/guest.log
// through a temporary file.
func (j *jobRun) saveGuestLog(r io.Reader, artifacts string) error {
	f, err := atomicfile.Create(filepath.Join(artifacts, "guest.log"), 0o644)
	if err != nil {
		return &hostWriteError{fmt.Errorf("save artifact guest.log: %w", err)}
	}
	defer f.Abort()
	w := &fileWriter{f: f.File}
	mw := j.job.Mask.Writer(w)
	_, err = io.Copy(mw, r)
	_ = mask.Flush(mw)
	switch {
	case w.err != nil:
		return &hostWriteError{fmt.Errorf("save artifact guest.log: %w", w.err)}
	case err != nil:
		return fmt.Errorf("read the artifact archive: %w", err)
	}
	if err := f.Commit(); err != nil {
		return &hostWriteError{fmt.Errorf("save artifact guest.log: %w", err)}
	}
	return nil
}

// hostWriteError is a failure to write on the host, which fails the job,
// told apart from the guest's or the backend's.
type hostWriteError struct{ err error }

func (e *hostWriteError) Error() string { return e.err.Error() }
func (e *hostWriteError) Unwrap() error { return e.err }
