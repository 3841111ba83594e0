package daemon

import (
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
)

// ErrSourceDigest is wrapped when a downloaded source does not match the
// digest the job spec names.
var ErrSourceDigest = errors.New("source digest mismatch")

// ObjectInfo describes a stored object without reading it.
type ObjectInfo struct {
	Size int64
	// SHA256 is the hex SHA-256 of the object's bytes as the store knows
	// it (from its "SHA-256=<base64url>" digest); empty when unknown.
	SHA256 string
}

// objectDigestHex turns an object store digest, "SHA-256=<base64url>",
// into hex; "" when it is not one.
func objectDigestHex(digest string) string {
	b64, ok := strings.CutPrefix(digest, "SHA-256=")
	if !ok {
		return ""
	}
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(b64); err == nil && len(b) == sha256.Size {
			return hex.EncodeToString(b)
		}
	}
	return ""
}

// isDigest reports whether s is 64 lowercase hex digits.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func noRelease() {}

// fetchSource makes an object-store source available as a directory of
// cache, named by its digest, and returns it with the func that releases
// it (Prune leaves an entry in use alone). The store describes the object
// first, every time, so the cache never hides a missing object: an object
// larger than lim.MaxBytes is refused and one whose stored digest differs
// from the spec's fails, both without a download. Then a cached tree
// answers; else the object is downloaded (at most lim.MaxBytes) to a file
// while it is hashed, and only bytes with the spec's digest are unpacked.
// Two workers fetching the same source each work in their own temporary
// directory; the first rename wins.
func fetchSource(ctx context.Context, store SourceStore, cache *SourceCache, lim sourcetar.Limits, bucket, object, digest string) (string, func(), error) {
	lim = lim.WithDefaults()
	if !isDigest(digest) {
		return "", noRelease, fmt.Errorf("source %s from %s: sha256 %q is not 64 lowercase hex digits: %w", object, bucket, digest, ErrSourceDigest)
	}
	info, err := store.Stat(ctx, bucket, object)
	if err != nil {
		return "", noRelease, err
	}
	if info.Size > lim.MaxBytes {
		return "", noRelease, fmt.Errorf("%w: object %s in %s is %d bytes, more than %d (--max-source-bytes)",
			sourcetar.ErrRefused, object, bucket, info.Size, lim.MaxBytes)
	}
	if info.SHA256 != "" && info.SHA256 != digest {
		return "", noRelease, fmt.Errorf("source %s from %s: sha256 is %s, the job spec says %s: %w", object, bucket, info.SHA256, digest, ErrSourceDigest)
	}
	tree, release, hit, err := cache.acquire(digest)
	if err != nil || hit {
		return tree, release, err
	}
	return cache.fill(digest, bucket, object, func(tmp string) error {
		tarball := filepath.Join(tmp, "source.tar.gz")
		if err := download(ctx, store, lim, bucket, object, digest, tarball); err != nil {
			return err
		}
		f, err := os.Open(tarball)
		if err != nil {
			return fmt.Errorf("source cache: %w", err)
		}
		err = sourcetar.Unpack(ctx, f, filepath.Join(tmp, "tree"), lim)
		f.Close()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return err
		case errors.Is(err, sourcetar.ErrRefused):
			return fmt.Errorf("%w (object %s in %s)", err, object, bucket)
		default:
			return fmt.Errorf("source %s from %s: %w", object, bucket, err)
		}
		if err := os.Remove(tarball); err != nil {
			return fmt.Errorf("source cache: %w", err)
		}
		return nil
	})
}

// download copies the object to file, at most lim.MaxBytes of it,
// checking the spec's digest.
func download(ctx context.Context, store SourceStore, lim sourcetar.Limits, bucket, object, digest, file string) error {
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
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(rc, lim.MaxBytes+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download source %s from %s: %w", object, bucket, err)
	}
	if n > lim.MaxBytes {
		return fmt.Errorf("%w: object %s in %s is more than %d bytes (--max-source-bytes)", sourcetar.ErrRefused, object, bucket, lim.MaxBytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("source %s from %s: sha256 is %s, the job spec says %s: %w", object, bucket, got, digest, ErrSourceDigest)
	}
	return nil
}
