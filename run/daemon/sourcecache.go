package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SourceCache is the directory of unpacked object-store sources, one entry
// per digest: <Dir>/<sha256>/tree, beside the marker file
// .jerichoci-source. The marker's mtime is the entry's last use, and a
// shared flock on it marks the entry in use (by any process): Prune takes
// that lock exclusively before it removes an entry, so it never removes one
// in use. Entries in the making are <Dir>/.fetch-*, locked the same way.
type SourceCache struct {
	Dir string
	// MaxAge removes the entries unused for longer; 0 keeps them.
	MaxAge time.Duration
	// MaxBytes removes the least recently used entries while the regular
	// files of all entries hold more; 0 turns that bound off.
	MaxBytes int64
	// Now is the clock of the marks of use; nil is time.Now.
	Now func() time.Time
}

const (
	sourceMarkerName    = ".jerichoci-source"
	sourceMarkerVersion = 2 // version 1 was the object name alone
	fetchDirPrefix      = ".fetch-"
	pruneDirPrefix      = ".prune-"
	// fetchGrace is how long Prune leaves a .fetch-* directory alone.
	fetchGrace = time.Hour
)

// sourceMarker is the content of an entry's marker file.
type sourceMarker struct {
	Version int    `json:"version"`
	Bucket  string `json:"bucket"`
	Object  string `json:"object"`
	Bytes   int64  `json:"bytes"` // of the tree's regular files
}

func (c *SourceCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// acquire returns the cached tree of digest, marked used and locked in use
// until release; hit is false when there is none (or only a stale entry of
// an older version, which fill replaces).
func (c *SourceCache) acquire(digest string) (tree string, release func(), hit bool, err error) {
	entry := filepath.Join(c.Dir, digest)
	marker := filepath.Join(entry, sourceMarkerName)
	f, err := os.Open(marker)
	if errors.Is(err, fs.ErrNotExist) {
		return "", noRelease, false, nil
	}
	if err != nil {
		return "", noRelease, false, fmt.Errorf("source cache: %w", err)
	}
	if err := flock(f, syscall.LOCK_SH); err != nil {
		f.Close()
		return "", noRelease, false, fmt.Errorf("source cache: lock %s: %w", marker, err)
	}
	// Prune may have moved the entry away between the open and the lock.
	if !sameFile(f, marker) {
		f.Close()
		return "", noRelease, false, nil
	}
	if _, err := readMarker(f); err != nil {
		f.Close()
		return "", noRelease, false, nil // stale
	}
	if err := c.touch(entry); err != nil {
		f.Close()
		return "", noRelease, false, err
	}
	return filepath.Join(entry, "tree"), closeOnce(f), true, nil
}

// fill makes the entry of digest: fn fills a fresh temporary directory
// (its tree subdirectory is the source), which then takes the entry's name.
// The tree comes back locked in use, like acquire's. When another worker
// was first, its entry answers.
func (c *SourceCache) fill(digest, bucket, object string, fn func(tmp string) error) (string, func(), error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", noRelease, fmt.Errorf("source cache: %w", err)
	}
	tmp, err := os.MkdirTemp(c.Dir, fetchDirPrefix)
	if err != nil {
		return "", noRelease, fmt.Errorf("source cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(tmp, sourceMarkerName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		os.RemoveAll(tmp)
		return "", noRelease, fmt.Errorf("source cache: %w", err)
	}
	done := false
	defer func() {
		if !done {
			lock.Close()
			os.RemoveAll(tmp)
		}
	}()
	if err := flock(lock, syscall.LOCK_SH); err != nil {
		return "", noRelease, fmt.Errorf("source cache: lock %s: %w", lock.Name(), err)
	}
	if err := fn(tmp); err != nil {
		return "", noRelease, err
	}
	n, err := treeBytes(filepath.Join(tmp, "tree"))
	if err != nil {
		return "", noRelease, fmt.Errorf("source cache: %w", err)
	}
	b, err := json.Marshal(sourceMarker{Version: sourceMarkerVersion, Bucket: bucket, Object: object, Bytes: n})
	if err != nil {
		return "", noRelease, err
	}
	if _, err := lock.WriteAt(append(b, '\n'), 0); err != nil {
		return "", noRelease, fmt.Errorf("source cache: write %s: %w", lock.Name(), err)
	}
	final := filepath.Join(c.Dir, digest)
	for attempt := 0; ; attempt++ {
		err := os.Rename(tmp, final)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || attempt > 0 {
			return "", noRelease, fmt.Errorf("source cache: %w", err)
		}
		// Another worker was first, or a stale entry is in the way.
		tree, release, hit, err := c.acquire(digest)
		if err != nil || hit {
			return tree, release, err
		}
		if _, err := c.remove(digest); err != nil {
			return "", noRelease, err
		}
	}
	done = true
	if err := c.touch(final); err != nil {
		lock.Close()
		return "", noRelease, err
	}
	return filepath.Join(final, "tree"), closeOnce(lock), nil
}

// touch marks the entry used now.
func (c *SourceCache) touch(entry string) error {
	now := c.now()
	if err := os.Chtimes(filepath.Join(entry, sourceMarkerName), now, now); err != nil {
		return fmt.Errorf("source cache: mark %s used: %w", entry, err)
	}
	return nil
}

// Prune removes the entries unused for more than MaxAge, then the least
// recently used ones until the entries hold at most MaxBytes, but never an
// entry in use; with them, entries of older versions, .fetch-* directories
// left for more than an hour by a fetch that is gone and the leftovers of
// earlier prunes. It goes on past a failure and reports them all.
func (c *SourceCache) Prune(ctx context.Context, now time.Time) error {
	ents, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prune source cache: %w", err)
	}
	type entry struct {
		name  string
		used  time.Time
		bytes int64
	}
	var (
		live  []entry
		total int64
		errs  []error
	)
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		switch {
		case strings.HasPrefix(name, pruneDirPrefix):
			errs = append(errs, c.removeAside(filepath.Join(c.Dir, name)))
		case strings.HasPrefix(name, fetchDirPrefix):
			info, err := e.Info()
			if err != nil || now.Sub(info.ModTime()) < fetchGrace {
				continue // gone meanwhile, or a fetch may still be at it
			}
			_, err = c.remove(name)
			errs = append(errs, err)
		case isDigest(name):
			m, used, err := statMarker(filepath.Join(c.Dir, name, sourceMarkerName))
			if err != nil { // no marker, or one of an older version
				_, err = c.remove(name)
				errs = append(errs, err)
				continue
			}
			live = append(live, entry{name: name, used: used, bytes: m.Bytes})
			total += m.Bytes
		}
	}
	sort.Slice(live, func(i, j int) bool {
		if !live[i].used.Equal(live[j].used) {
			return live[i].used.Before(live[j].used)
		}
		return live[i].name < live[j].name
	})
	for _, e := range live {
		if err := ctx.Err(); err != nil {
			return err
		}
		expired := c.MaxAge > 0 && now.Sub(e.used) > c.MaxAge
		over := c.MaxBytes > 0 && total > c.MaxBytes
		if !expired && !over {
			continue
		}
		removed, err := c.remove(e.name)
		errs = append(errs, err)
		if removed {
			total -= e.bytes
		}
	}
	return errors.Join(errs...)
}

// remove takes the entry (or .fetch-* directory) name out of the cache
// unless it is in use: under an exclusive lock of its marker it is moved
// aside, then deleted.
func (c *SourceCache) remove(name string) (bool, error) {
	p := filepath.Join(c.Dir, name)
	marker := filepath.Join(p, sourceMarkerName)
	f, err := os.Open(marker)
	switch {
	case err == nil:
		defer f.Close()
		if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil // in use
		} else if err != nil {
			return false, fmt.Errorf("prune source cache: lock %s: %w", marker, err)
		}
		if !sameFile(f, marker) {
			return false, nil // moved by another prune
		}
	case errors.Is(err, fs.ErrNotExist):
		// Without a marker nothing can use it (a fetch makes its marker
		// first, and a .fetch-* directory this old has no fetch left).
	default:
		return false, fmt.Errorf("prune source cache: %w", err)
	}
	aside := filepath.Join(c.Dir, pruneDirPrefix+rand.Text())
	if err := os.Rename(p, aside); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("prune source cache: %w", err)
	}
	if err := os.RemoveAll(aside); err != nil {
		return true, fmt.Errorf("prune source cache: %w", err)
	}
	return true, nil
}

// removeAside deletes a directory an earlier prune moved aside and did not
// finish deleting, unless a prune holds it.
func (c *SourceCache) removeAside(p string) error {
	if f, err := os.Open(filepath.Join(p, sourceMarkerName)); err == nil {
		defer f.Close()
		if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return nil // a prune of another process is deleting it
		}
	}
	if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("prune source cache: %w", err)
	}
	return nil
}

// statMarker reads an entry's marker and its last use.
func statMarker(marker string) (sourceMarker, time.Time, error) {
	f, err := os.Open(marker)
	if err != nil {
		return sourceMarker{}, time.Time{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return sourceMarker{}, time.Time{}, err
	}
	m, err := readMarker(f)
	return m, info.ModTime(), err
}

// readMarker decodes a marker of the current version.
func readMarker(f *os.File) (sourceMarker, error) {
	var m sourceMarker
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	if m.Version != sourceMarkerVersion {
		return m, fmt.Errorf("source cache marker version %d: expected %d", m.Version, sourceMarkerVersion)
	}
	return m, nil
}

// treeBytes is the size of the regular files under dir.
func treeBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}

// flock applies an flock(2) operation to f, again when a signal interrupts it.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if ferr = syscall.Flock(int(fd), how); ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

// sameFile reports whether the open f is still the file at p.
func sameFile(f *os.File, p string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(p)
	return err == nil && os.SameFile(a, b)
}

// closeOnce is a release func that closes f (and so drops its lock) once.
func closeOnce(f *os.File) func() {
	return sync.OnceFunc(func() { f.Close() })
}
