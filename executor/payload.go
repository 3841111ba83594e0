package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"jerichoci/model"
)

// ReadPayloadManifest reads <root>/share/pikaci/payload-manifest.json of a
// staged output: a read error is the file's (*fs.PathError), a decode
// error names the file.
func ReadPayloadManifest(root string) (model.PayloadManifest, error) {
	p := filepath.Join(root, model.PayloadManifestRelativePath)
	b, err := os.ReadFile(p)
	if err != nil {
		return model.PayloadManifest{}, err
	}
	var m model.PayloadManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return model.PayloadManifest{}, fmt.Errorf("decode %s: %w", p, err)
	}
	return m, nil
}

// NixStoreGuestPath is where a staged job's guest sees the store paths
// of its outputs' closure, read-only, so the store paths its payloads
// refer to resolve; the host's store directory is the same path.
const NixStoreGuestPath = "/nix/store"

// payloadDisks are the read-only disks of a staged job's payloads: each
// manifest mount of each payload (docs/CONTRACTS.md, "Staged payload
// devices"), then one per store path of the payloads' closure
// (closureDisks).
func (j *jobRun) payloadDisks(ctx context.Context) ([]Disk, error) {
	if len(j.job.StagedPayloads) == 0 {
		return nil, nil
	}
	var (
		disks          []Disk
		roots, sources []string
	)
	seen := map[string]string{}
	for _, p := range j.job.StagedPayloads {
		root, err := filepath.EvalSymlinks(p.MountPath)
		if err != nil {
			return nil, fmt.Errorf("resolve staged output %s: %w", p.MountPath, err)
		}
		roots = append(roots, root)
		m, err := ReadPayloadManifest(root)
		var pe *fs.PathError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("missing payload manifest for staged output %s", root)
		case errors.As(err, &pe):
			return nil, fmt.Errorf("read payload manifest of staged output %s: %w", root, err)
		case err != nil:
			return nil, err
		}
		for _, mount := range m.Mounts {
			if err := model.ValidatePayloadMount(root, mount); err != nil {
				return nil, err
			}
			name := model.PayloadDeviceName(m.Kind, mount.Name)
			if prev, dup := seen[name]; dup {
				return nil, fmt.Errorf("payload mounts %s and %s of staged output %s share the Incus device name %s", prev, mount.Name, root, name)
			}
			seen[name] = mount.Name
			source := model.PayloadMountSource(root, mount)
			sources = append(sources, source)
			disks = append(disks, Disk{Name: name, Source: source, Path: mount.GuestPath, ReadOnly: mount.ReadOnly})
			j.hostf("staged payload %s: %s -> %s (device %s)", p.Role, source, mount.GuestPath, name)
		}
	}
	closure, err := j.closureDisks(ctx, roots, sources)
	if err != nil {
		return nil, err
	}
	return append(disks, closure...), nil
}
