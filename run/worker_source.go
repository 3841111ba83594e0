package run

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// ErrSourceDigest is wrapped when a downloaded source does not match the
// digest the job spec names.
var ErrSourceDigest = errors.New("source digest mismatch")

// PackSource writes dir as a gzipped tarball to w, the format of the
// sources object store: regular files, directories and symlinks, in
// lexical order, with fixed times and owners, so equal trees give equal
// bytes. The snapshot skip names (.git, target, …) are left out, as in a
// snapshot. only, when not nil, selects the files to pack by their
// slash-separated path relative to dir (say, the files git knows);
// directories then only come as the parents of those files.
func PackSource(ctx context.Context, dir string, w io.Writer, only map[string]bool) error {
	parents := map[string]bool{}
	for f := range only {
		for p := path.Dir(f); p != "." && p != "/" && !parents[p]; p = path.Dir(p) {
			parents[p] = true
		}
	}
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	epoch := time.Unix(0, 0).UTC()
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		slash := filepath.ToSlash(rel)
		if SkipInSnapshot(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if only != nil {
			switch {
			case d.IsDir() && !parents[slash]:
				return filepath.SkipDir
			case d.IsDir():
				return nil // implied by its files
			case !only[slash]:
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: slash, Mode: int64(info.Mode().Perm()), ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, link
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		default:
			return nil // sockets, devices, pipes are left out
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("pack %s: %w", rel, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("pack %s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack source %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack source %s: %w", dir, err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("pack source %s: %w", dir, err)
	}
	return nil
}

// UnpackSource extracts a PackSource tarball from r into dst (created).
// Entries that would land outside dst are refused.
func UnpackSource(ctx context.Context, r io.Reader, dst string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("unpack source: %w", err)
	}
	defer gz.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("unpack source: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack source: %w", err)
		}
		name := path.Clean(strings.TrimSuffix(hdr.Name, "/"))
		if name == "." {
			continue // "./" of `tar -C dir -czf x .`
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unpack source: entry %q is outside the tree", hdr.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("unpack source: %w", err)
		}
		mode := os.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("unpack source: %w", err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return fmt.Errorf("unpack source: %w", err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return fmt.Errorf("unpack source: %w", err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("unpack source %s: %w", name, err)
			}
		default:
			// Nothing else is packed; ignore what another tool may add.
		}
	}
}

// ErrSourceUnusable is wrapped when a source matches its digest but is not
// a source tarball: retrying cannot help.
var ErrSourceUnusable = errors.New("source is not a usable tarball")

// fetchSource makes an object-store source available as a directory under
// cacheDir, named by its digest, downloading and checking it the first
// time: the download goes to a file while it is hashed, and only bytes with
// the spec's digest are unpacked. Two workers fetching the same source each
// work in their own temporary directory; the first rename wins.
func fetchSource(ctx context.Context, store SourceStore, cacheDir, bucket, object, digest string) (string, error) {
	final := filepath.Join(cacheDir, digest)
	if _, err := os.Stat(filepath.Join(final, ".jerichoci-source")); err == nil {
		return filepath.Join(final, "tree"), nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("source cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".fetch-")
	if err != nil {
		return "", fmt.Errorf("source cache: %w", err)
	}
	defer os.RemoveAll(tmp) // after a successful rename there is nothing left
	tarball := filepath.Join(tmp, "source.tar.gz")
	if err := download(ctx, store, bucket, object, digest, tarball); err != nil {
		return "", err
	}
	f, err := os.Open(tarball)
	if err != nil {
		return "", fmt.Errorf("source cache: %w", err)
	}
	err = UnpackSource(ctx, f, filepath.Join(tmp, "tree"))
	f.Close()
	if err != nil {
		if ctx.Err() != nil {
			return "", err
		}
		return "", fmt.Errorf("source %s from %s: %w: %w", object, bucket, ErrSourceUnusable, err)
	}
	if err := os.Remove(tarball); err != nil {
		return "", fmt.Errorf("source cache: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".jerichoci-source"), []byte(object+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("source cache: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Stat(filepath.Join(final, ".jerichoci-source")); serr == nil {
			return filepath.Join(final, "tree"), nil // another worker was first
		}
		return "", fmt.Errorf("source cache: %w", err)
	}
	return filepath.Join(final, "tree"), nil
}

// download copies the object to file, checking the spec's digest.
func download(ctx context.Context, store SourceStore, bucket, object, digest, file string) error {
	rc, err := store.Open(ctx, bucket, object)
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("source cache: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), rc)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download source %s from %s: %w", object, bucket, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("source %s from %s: sha256 is %s, the job spec says %s: %w", object, bucket, got, digest, ErrSourceDigest)
	}
	return nil
}

// SourceLimits bound an uploaded source tree.
type SourceLimits struct {
	// MaxBytes bounds the bytes of the downloaded object and, separately,
	// the bytes of the regular files it unpacks to.
	MaxBytes int64
	// MaxEntries bounds the number of tar entries.
	MaxEntries int
}

// DefaultSourceLimits: 4 GiB and a million entries.
func DefaultSourceLimits() SourceLimits { return SourceLimits{MaxBytes: 4 << 30, MaxEntries: 1_000_000} }
