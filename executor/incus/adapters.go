package incus

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"jerichoci/executor"
	"jerichoci/images"
)

// ImageStore is images.Store on a Client, in the client's project.
type ImageStore struct {
	c     *Client
	props map[string]string
}

var _ images.Store = ImageStore{}

// NewImageStore returns the images store over c.
func NewImageStore(c *Client) ImageStore { return ImageStore{c: c} }

// WithProperties returns the store whose uploads also set props (beside
// those of the image's metadata.yaml).
func (s ImageStore) WithProperties(props map[string]string) ImageStore {
	s.props = props
	return s
}

func (s ImageStore) AliasTarget(ctx context.Context, alias string) (string, error) {
	a, err := s.c.GetImageAlias(ctx, alias)
	if IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return a.Target, nil
}

func (s ImageStore) HasImage(ctx context.Context, fingerprint string) (bool, error) {
	_, err := s.c.GetImage(ctx, fingerprint)
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func (s ImageStore) Upload(ctx context.Context, a images.Artifact) (string, error) {
	var files []io.Reader
	for _, p := range a.Files() {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		defer f.Close()
		files = append(files, f)
	}
	up := ImageUpload{Unified: files[0], Filename: filepath.Base(a.Files()[0]), Properties: s.props}
	if a.Rootfs != "" {
		up.Rootfs, up.RootfsName, up.VM = files[1], filepath.Base(a.Rootfs), a.VM
	}
	return s.c.UploadImage(ctx, up)
}

func (s ImageStore) CreateAlias(ctx context.Context, alias, fingerprint, description string) error {
	return s.c.CreateImageAlias(ctx, alias, fingerprint, description)
}

func (s ImageStore) MoveAlias(ctx context.Context, alias, fingerprint, description string) error {
	return s.c.UpdateImageAlias(ctx, alias, fingerprint, description)
}

func (s ImageStore) PruneImage(ctx context.Context, fingerprint string) (bool, error) {
	img, err := s.c.GetImage(ctx, fingerprint)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(img.Aliases) > 0 {
		return false, nil
	}
	if err := s.c.DeleteImage(ctx, fingerprint); err != nil {
		return false, err
	}
	return true, nil
}

// OwnedInstance is an instance that carries all of jerichoci's config keys
// (executor.ConfigRunID, ConfigJobID and ConfigOwner). It has the fields of
// the daemon's reaper type, so the wiring converts one into the other.
type OwnedInstance struct {
	Name    string
	RunID   string
	JobID   string // the catalog job id, e.g. "hello"
	Owner   string
	Fleet   string    // "" when it has none (jerichoci run, older daemons)
	Process string    // executor.ConfigProcess, "" when it has none
	Created time.Time // when incusd created it
}

// Instances lists and deletes jerichoci's instances in the client's
// project, for the daemon's orphan reaper.
type Instances struct{ c *Client }

// NewInstances returns the instances of c's project.
func NewInstances(c *Client) Instances { return Instances{c} }

// ListOwned returns the instances that carry all three jerichoci keys in
// their own config; any other instance is never returned, so never touched.
func (i Instances) ListOwned(ctx context.Context) ([]OwnedInstance, error) {
	all, err := i.c.ListInstances(ctx)
	if err != nil {
		return nil, err
	}
	var out []OwnedInstance
	for _, in := range all {
		runID, ok1 := in.Config[executor.ConfigRunID]
		jobID, ok2 := in.Config[executor.ConfigJobID]
		owner, ok3 := in.Config[executor.ConfigOwner]
		if ok1 && ok2 && ok3 && runID != "" && owner != "" {
			out = append(out, OwnedInstance{Name: in.Name, RunID: runID, JobID: jobID, Owner: owner,
				Fleet: in.Config[executor.ConfigFleet], Process: in.Config[executor.ConfigProcess], Created: in.CreatedAt})
		}
	}
	return out, nil
}

// Delete force-deletes an instance; a missing one is not an error.
func (i Instances) Delete(ctx context.Context, name string) error {
	return i.c.DeleteInstance(ctx, name)
}
