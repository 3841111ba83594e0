package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// SubjectCatalog is where a client asks the daemons which lanes and
// targets they know (request/reply, empty body; CatalogReply answers).
// One daemon of the fleet answers (they share a queue group).
const SubjectCatalog = "jerichoci.catalog"

// CatalogQueueGroup is the queue group of the daemons' catalog
// subscriptions, so one answer comes back.
const CatalogQueueGroup = "jerichoci-catalog"

// CatalogReply answers a catalog request: the daemon's own catalog (its
// built-in one with serve's --catalog merged over it), without what a
// job's source may add (docs/CATALOG.md, "Lanes from the repository").
type CatalogReply struct {
	Daemon  string         `json:"daemon"`  // the answering daemon's id
	Catalog string         `json:"catalog"` // the catalog's name ("built-in + jerichoci.lanes.json")
	Targets []CatalogEntry `json:"targets"` // in catalog order
	Error   string         `json:"error,omitempty"`
}

// CatalogEntry is one target of a CatalogReply, with its lane if it has one.
type CatalogEntry struct {
	ID               string   `json:"id"`
	Description      string   `json:"description,omitempty"`
	Lane             string   `json:"lane,omitempty"`    // lane title; empty for a target without a lane
	Trigger          string   `json:"trigger,omitempty"` // "branch", "nightly" or empty
	ConcurrencyGroup string   `json:"concurrency_group,omitempty"`
	Jobs             int      `json:"jobs"`
	Filters          []string `json:"filters,omitempty"`
	// Paths are what lane selection matches: the lane definition paths,
	// then the filters (branch lanes only).
	Paths  []string `json:"paths,omitempty"`
	Source string   `json:"source"` // where the daemon's target was defined
}

// LaneTitles returns the reply's lane titles, in catalog order.
func (r CatalogReply) LaneTitles() []string {
	var out []string
	for _, t := range r.Targets {
		if t.Lane != "" {
			out = append(out, t.Lane)
		}
	}
	return out
}

// IDs returns the reply's target ids, in catalog order.
func (r CatalogReply) IDs() []string {
	out := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		out[i] = t.ID
	}
	return out
}

// Catalog asks a daemon for its catalog. No daemon listening is an error
// wrapping ErrNoDaemon; an answer that carries an error is returned with
// that error.
func (c *Client) Catalog(ctx context.Context) (CatalogReply, error) {
	m, err := c.nc.RequestWithContext(ctx, SubjectCatalog, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return CatalogReply{}, fmt.Errorf("%w on %s: is jerichoci serve running (and new enough to answer it)?", ErrNoDaemon, SubjectCatalog)
	}
	if err != nil {
		return CatalogReply{}, fmt.Errorf("catalog request on %s: %w", SubjectCatalog, err)
	}
	var rep CatalogReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return CatalogReply{}, fmt.Errorf("catalog request on %s: unreadable reply (%d bytes): %w", SubjectCatalog, len(m.Data), err)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("catalog request: daemon %s: %s", rep.Daemon, rep.Error)
	}
	return rep, nil
}
