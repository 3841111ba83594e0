package incus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// FileOwner is the owner and mode of a pushed file or directory.
type FileOwner struct {
	UID  int
	GID  int
	Mode fs.FileMode // permission bits plus setuid, setgid and sticky
}

// FileInfo describes a pulled file.
type FileInfo struct {
	UID  int
	GID  int
	Mode fs.FileMode
	Type string // "file", "directory" or "symlink"
}

func filesPath(name string) string { return "/instances/" + url.PathEscape(name) + "/files" }

// modeString renders a mode the way the X-Incus-mode header wants it.
func modeString(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

func (c *Client) pushEntry(ctx context.Context, name, guestPath, typ string, body io.Reader, own FileOwner) error {
	if !path.IsAbs(guestPath) {
		return fmt.Errorf("path %q is not absolute", guestPath)
	}
	h := http.Header{
		// Without this content type the server answers 200 and writes an
		// empty file.
		"Content-Type":  {"application/octet-stream"},
		"X-Incus-Uid":   {strconv.Itoa(own.UID)},
		"X-Incus-Gid":   {strconv.Itoa(own.GID)},
		"X-Incus-Mode":  {modeString(own.Mode)},
		"X-Incus-Type":  {typ},
		"X-Incus-Write": {"overwrite"},
	}
	if body == nil {
		body = http.NoBody
	}
	return c.doSync(ctx, request{method: http.MethodPost, path: filesPath(name),
		query: url.Values{"path": {guestPath}}, body: body, header: h})
}

// PushFile writes r to guestPath in the instance (running or stopped),
// replacing an existing file. The parent directory must exist.
func (c *Client) PushFile(ctx context.Context, name, guestPath string, r io.Reader, own FileOwner) error {
	if err := c.pushEntry(ctx, name, guestPath, "file", r, own); err != nil {
		return fmt.Errorf("incus: push file %q to instance %q: %w", guestPath, name, err)
	}
	return nil
}

// Mkdir creates a directory in the instance; an existing one is no error.
// The parent must exist (see MkdirAll).
func (c *Client) Mkdir(ctx context.Context, name, guestPath string, own FileOwner) error {
	if err := c.pushEntry(ctx, name, guestPath, "directory", nil, own); err != nil {
		return fmt.Errorf("incus: create directory %q in instance %q: %w", guestPath, name, err)
	}
	return nil
}

// MkdirAll creates a directory and its missing parents, all with own.
func (c *Client) MkdirAll(ctx context.Context, name, guestPath string, own FileOwner) error {
	if !path.IsAbs(guestPath) {
		return fmt.Errorf("incus: create directory %q in instance %q: path is not absolute", guestPath, name)
	}
	p := ""
	for _, part := range strings.Split(path.Clean(guestPath), "/")[1:] {
		p += "/" + part
		if err := c.Mkdir(ctx, name, p, own); err != nil {
			return err
		}
	}
	return nil
}

// PushTree copies the host directory hostDir to guestDir in the instance:
// directories, regular files and their permission bits, all owned by
// uid/gid. Other file types are skipped. guestDir's parent must exist.
func (c *Client) PushTree(ctx context.Context, name, hostDir, guestDir string, uid, gid int) error {
	return filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("incus: push tree %q: %w", hostDir, err)
		}
		rel, err := filepath.Rel(hostDir, p)
		if err != nil {
			return err
		}
		dst := path.Join(guestDir, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("incus: push tree %q: %w", hostDir, err)
		}
		own := FileOwner{UID: uid, GID: gid, Mode: info.Mode()}
		switch {
		case d.IsDir():
			return c.Mkdir(ctx, name, dst, own)
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("incus: push tree %q: %w", hostDir, err)
			}
			defer f.Close()
			return c.PushFile(ctx, name, dst, f, own)
		}
		return nil
	})
}

// PullFile copies the file at guestPath in the instance to w. A directory
// is an error.
func (c *Client) PullFile(ctx context.Context, name, guestPath string, w io.Writer) (FileInfo, error) {
	fail := func(err error) (FileInfo, error) {
		return FileInfo{}, fmt.Errorf("incus: pull file %q from instance %q: %w", guestPath, name, err)
	}
	p := filesPath(name)
	resp, err := c.send(ctx, request{method: http.MethodGet, path: p, query: url.Values{"path": {guestPath}}})
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, err := decodeEnvelope(http.MethodGet, p, resp)
		if err == nil {
			err = fmt.Errorf("GET /1.0%s: unexpected HTTP %d", p, resp.StatusCode)
		}
		return fail(err)
	}
	info := FileInfo{Type: resp.Header.Get("X-Incus-Type")}
	if info.Type == "directory" {
		return fail(errors.New("is a directory"))
	}
	info.UID, _ = strconv.Atoi(resp.Header.Get("X-Incus-Uid"))
	info.GID, _ = strconv.Atoi(resp.Header.Get("X-Incus-Gid"))
	if m, err := strconv.ParseUint(resp.Header.Get("X-Incus-Mode"), 8, 32); err == nil {
		info.Mode = fs.FileMode(m & 0o777)
		if m&0o4000 != 0 {
			info.Mode |= fs.ModeSetuid
		}
		if m&0o2000 != 0 {
			info.Mode |= fs.ModeSetgid
		}
		if m&0o1000 != 0 {
			info.Mode |= fs.ModeSticky
		}
	}
	// A file may be gigabytes: copy it through one bounded buffer, never
	// letting w read all of the body itself (io.ReaderFrom) nor the body
	// write itself (io.WriterTo).
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{resp.Body}, *bufp); err != nil {
		return fail(err)
	}
	return info, nil
}

// copyBufferSize is the size of the buffer a pulled file goes through.
const copyBufferSize = 32 << 10

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// DeleteFile removes a file or empty directory in the instance; one that
// does not exist is no error.
func (c *Client) DeleteFile(ctx context.Context, name, guestPath string) error {
	err := c.doSync(ctx, request{method: http.MethodDelete, path: filesPath(name), query: url.Values{"path": {guestPath}}})
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("incus: delete file %q in instance %q: %w", guestPath, name, err)
	}
	return nil
}
