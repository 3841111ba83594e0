// Package atomicfile replaces files so that a reader sees the old content
// or the new, never a part, and so that the new content survives a crash
// once the write returns: a temporary file in the same directory, synced,
// renamed over the name, then the directory synced. It is a leaf: the
// standard library only.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data, mode perm (not reduced by the umask).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// File is the next content of a path, written under a temporary name in
// the path's directory. Commit puts it at the path; Abort drops it. One of
// the two must be called; Abort after Commit does nothing, so a deferred
// Abort is the usual cleanup.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts the next content of path, mode perm (not reduced by the
// umask). Nothing is at path until Commit.
func Create(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &File{File: f, path: path}, nil
}

// Commit syncs the content, renames it over the path and syncs the
// directory. On an error nothing new is at the path and the temporary file
// is gone, except when only the directory's sync failed: then the new
// content is in place but may not survive a crash, and the error says so.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("write %s: already committed or aborted", f.path)
	}
	f.done = true
	tmp := f.Name()
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", f.path, err)
	}
	return nil
}

// Abort drops the content: the path keeps what it had. It does nothing
// after Commit or a first Abort.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// syncDir makes a rename in dir durable. A filesystem that cannot sync a
// directory (EINVAL, ENOTSUP: some shared folders) is not an error: the
// rename is as durable as that filesystem makes it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}
