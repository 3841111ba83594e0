package incus

import (
	"context"
	"encoding/json"
	"fmt"

	"jerichoci/executor"
)

var _ executor.GuestIDMapper = (*Backend)(nil)

// idmapEntry is one range of an instance's volatile.idmap.current.
type idmapEntry struct {
	Isuid, Isgid           bool
	Hostid, Nsid, Maprange int64
}

// GuestRootIDs reads which host uid and gid the instance's root is, from
// its volatile.idmap.current (volatile.idmap.next before its first
// start); a privileged container's root is the host's (docs/INCUS.md,
// "Artifacts through a mounted directory").
func (b *Backend) GuestRootIDs(ctx context.Context, name string) (uid, gid int, err error) {
	inst, err := b.c.GetInstance(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	return rootIDs(inst.Config, inst.ExpandedConfig)
}

// rootIDs maps the guest's uid and gid 0 through the instance's idmap.
func rootIDs(config, expanded map[string]string) (uid, gid int, err error) {
	raw := config["volatile.idmap.current"]
	if raw == "" || raw == "[]" {
		raw = config["volatile.idmap.next"]
	}
	var entries []idmapEntry
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &entries); err != nil {
			return 0, 0, fmt.Errorf("incus: read the instance's idmap %q: %w", raw, err)
		}
	}
	if len(entries) == 0 {
		if expanded["security.privileged"] == "true" {
			return 0, 0, nil
		}
		return 0, 0, fmt.Errorf("incus: the instance has no idmap and is not privileged")
	}
	uid, gid = -1, -1
	for _, e := range entries {
		if e.Nsid > 0 || e.Nsid+e.Maprange <= 0 {
			continue
		}
		id := int(e.Hostid - e.Nsid)
		if e.Isuid && uid < 0 {
			uid = id
		}
		if e.Isgid && gid < 0 {
			gid = id
		}
	}
	if uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("incus: the instance's idmap %s maps no root uid and gid", raw)
	}
	return uid, gid, nil
}
