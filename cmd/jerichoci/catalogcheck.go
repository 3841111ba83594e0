package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"jerichoci/internal/wording"
	"jerichoci/run/protocol"
	"jerichoci/targets"
)

// catalogAsker is what the enqueue check needs of the protocol client.
type catalogAsker interface {
	Catalog(ctx context.Context) (protocol.CatalogReply, error)
}

// sourceCatalog is enqueue's local view of the catalog: --catalog or
// $JERICHOCI_CATALOG when given, else the source directory's own
// jerichoci.lanes.json (what the daemon merges over its catalog for the
// job, docs/CATALOG.md) merged over the built-in catalog, else the
// built-in catalog.
func (c *cli) sourceCatalog(flagPath, srcDir string) (*targets.Catalog, error) {
	if flagPath != "" {
		return c.loadCatalog(flagPath)
	}
	if c.env != nil {
		if v, ok := c.env(envCatalog); ok && strings.TrimSpace(v) != "" {
			return c.loadCatalog(v)
		}
	}
	path := filepath.Join(srcDir, targets.DefaultFile)
	if _, err := os.Stat(path); err != nil {
		return targets.Builtin(), nil
	}
	return targets.LoadProject(path)
}

// enqueueName tells whether name is a lane title (lane true) or a target
// id, from the local view of the catalog and, when that lacks it, from
// the daemon's answer to a catalog request. A name neither knows is an
// error with a "did you mean" (wording.Suggest over both): enqueue refuses
// it before queuing anything.
func enqueueName(ctx context.Context, local *targets.Catalog, daemon catalogAsker, name string) (lane bool, err error) {
	if _, err := local.Lookup(name); err == nil {
		return false, nil
	}
	if _, err := local.LookupLane(name); err == nil {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := daemon.Catalog(ctx)
	if err != nil {
		return false, fmt.Errorf("unknown lane or target `%s` in the local catalog (%s), and the daemon's catalog could not be asked: %w",
			name, local.Name(), err)
	}
	for _, t := range rep.Targets {
		if t.ID == name {
			return false, nil
		}
	}
	for _, t := range rep.Targets {
		if t.Lane != "" && t.Lane == name {
			return true, nil
		}
	}
	candidates := append(append(local.LaneTitles(), local.IDs()...), append(rep.LaneTitles(), rep.IDs()...)...)
	msg := fmt.Sprintf("unknown lane or target `%s`: neither the local catalog (%s) nor the daemon's (%s, daemon %s) has it",
		name, local.Name(), rep.Catalog, rep.Daemon)
	if s := wording.DidYouMean(name, candidates); s != "" {
		msg += "; " + s
	}
	return false, errors.New(msg + " (see 'jerichoci lanes list --daemon' and 'jerichoci targets list --daemon')")
}
