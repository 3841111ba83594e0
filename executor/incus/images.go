package incus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// ImageAlias is an alias and the image it points at.
type ImageAlias struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Target      string `json:"target"` // full fingerprint
	Type        string `json:"type"`   // "container" or "virtual-machine"
}

// Image is what GET /1.0/images/<fingerprint> returns (the fields we use).
type Image struct {
	Fingerprint  string            `json:"fingerprint"`
	Type         string            `json:"type"`
	Filename     string            `json:"filename"`
	Architecture string            `json:"architecture"`
	Size         int64             `json:"size"`
	Public       bool              `json:"public"`
	Properties   map[string]string `json:"properties"`
	Aliases      []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"aliases"`
	UploadedAt time.Time `json:"uploaded_at"`
}

func aliasPath(name string) string { return "/images/aliases/" + url.PathEscape(name) }

// GetImageAlias returns an alias; IsNotFound(err) when there is none.
func (c *Client) GetImageAlias(ctx context.Context, name string) (*ImageAlias, error) {
	var a ImageAlias
	if err := c.get(ctx, aliasPath(name), nil, &a); err != nil {
		return nil, fmt.Errorf("incus: get image alias %q: %w", name, err)
	}
	return &a, nil
}

// CreateImageAlias points a new alias at an image; IsConflict(err) when the
// alias exists.
func (c *Client) CreateImageAlias(ctx context.Context, name, fingerprint, description string) error {
	body := map[string]string{"name": name, "target": fingerprint, "description": description}
	if err := c.doSync(ctx, request{method: http.MethodPost, path: "/images/aliases", json: body}); err != nil {
		return fmt.Errorf("incus: create image alias %q: %w", name, err)
	}
	return nil
}

// UpdateImageAlias points an existing alias at another image.
func (c *Client) UpdateImageAlias(ctx context.Context, name, fingerprint, description string) error {
	body := map[string]string{"target": fingerprint, "description": description}
	if err := c.doSync(ctx, request{method: http.MethodPut, path: aliasPath(name), json: body}); err != nil {
		return fmt.Errorf("incus: update image alias %q: %w", name, err)
	}
	return nil
}

// DeleteImageAlias removes an alias (not the image); a missing one is no
// error.
func (c *Client) DeleteImageAlias(ctx context.Context, name string) error {
	err := c.doSync(ctx, request{method: http.MethodDelete, path: aliasPath(name)})
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("incus: delete image alias %q: %w", name, err)
	}
	return nil
}

// GetImage returns an image by fingerprint; IsNotFound(err) when there is
// none.
func (c *Client) GetImage(ctx context.Context, fingerprint string) (*Image, error) {
	var img Image
	if err := c.get(ctx, "/images/"+url.PathEscape(fingerprint), nil, &img); err != nil {
		return nil, fmt.Errorf("incus: get image %q: %w", fingerprint, err)
	}
	return &img, nil
}

// DeleteImage removes an image and waits; a missing one is no error.
func (c *Client) DeleteImage(ctx context.Context, fingerprint string) error {
	_, err := c.run(ctx, request{method: http.MethodDelete, path: "/images/" + url.PathEscape(fingerprint)})
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("incus: delete image %q: %w", fingerprint, err)
	}
	return nil
}

// ImageUpload is an image file to upload.
type ImageUpload struct {
	// Unified is a unified tarball (metadata.yaml plus rootfs/), or the
	// metadata tarball of a split image when Rootfs is set.
	Unified  io.Reader
	Filename string // shown by the server; optional
	// Rootfs makes a split image: a rootfs tarball or squashfs
	// (containers), or a disk image such as qcow2 when VM is set.
	Rootfs     io.Reader
	RootfsName string
	VM         bool
	Public     bool
	Properties map[string]string // added to those in metadata.yaml
}

// UploadImage uploads an image and returns its fingerprint. A unified
// tarball goes as the raw body; a split image as multipart/form-data with
// the parts "metadata" and "rootfs" (or "rootfs.img" for a VM disk), as
// the server wants them. The fingerprint is sha256 of the tarball, or of
// the metadata followed by the rootfs for a split image.
func (c *Client) UploadImage(ctx context.Context, up ImageUpload) (string, error) {
	fail := func(err error) (string, error) { return "", fmt.Errorf("incus: upload image: %w", err) }
	if up.Unified == nil {
		return fail(fmt.Errorf("no image data"))
	}
	h := http.Header{"X-Incus-Public": {fmt.Sprint(up.Public)}}
	if up.Filename != "" {
		h.Set("X-Incus-Filename", up.Filename)
	}
	if len(up.Properties) > 0 {
		v := url.Values{}
		keys := make([]string, 0, len(up.Properties))
		for k := range up.Properties {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v.Set(k, up.Properties[k])
		}
		h.Set("X-Incus-Properties", v.Encode())
	}
	body := up.Unified
	h.Set("Content-Type", "application/octet-stream")
	var writerDone chan error
	if up.Rootfs != nil {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		h.Set("Content-Type", mw.FormDataContentType())
		writerDone = make(chan error, 1)
		go func() {
			err := writeSplit(mw, up)
			pw.CloseWithError(err)
			writerDone <- err
		}()
		// Closing the reader ends a writer still blocked on a failed request.
		defer func() { pr.Close(); <-writerDone }()
		body = pr
	}
	op, err := c.run(ctx, request{method: http.MethodPost, path: "/images", body: body, header: h})
	if err != nil {
		return fail(err)
	}
	var res struct {
		Fingerprint string `json:"fingerprint"`
	}
	if err := json.Unmarshal(op.Metadata, &res); err != nil || res.Fingerprint == "" {
		return fail(fmt.Errorf("operation %s: no fingerprint in the result", op.ID))
	}
	return res.Fingerprint, nil
}

func writeSplit(mw *multipart.Writer, up ImageUpload) error {
	name := up.Filename
	if name == "" {
		name = "metadata.tar"
	}
	fw, err := mw.CreateFormFile("metadata", name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(fw, up.Unified); err != nil {
		return err
	}
	part := "rootfs"
	if up.VM {
		part = "rootfs.img"
	}
	rname := up.RootfsName
	if rname == "" {
		rname = part
	}
	if fw, err = mw.CreateFormFile(part, rname); err != nil {
		return err
	}
	if _, err := io.Copy(fw, up.Rootfs); err != nil {
		return err
	}
	return mw.Close()
}
