package incus

import (
	"context"
	"fmt"
	"net/url"
)

// Profile is what GET /1.0/profiles/<name> returns (the fields we use).
type Profile struct {
	Name        string                       `json:"name"`
	Project     string                       `json:"project"`
	Description string                       `json:"description"`
	Config      map[string]string            `json:"config"`
	Devices     map[string]map[string]string `json:"devices"`
}

// GetProfile returns a profile of the client's project; IsNotFound(err)
// when there is none.
func (c *Client) GetProfile(ctx context.Context, name string) (*Profile, error) {
	var p Profile
	if err := c.get(ctx, "/profiles/"+url.PathEscape(name), nil, &p); err != nil {
		return nil, fmt.Errorf("incus: get profile %q: %w", name, err)
	}
	return &p, nil
}

// StoragePool is what GET /1.0/storage-pools/<name> returns (the fields we
// use).
type StoragePool struct {
	Name   string            `json:"name"`
	Driver string            `json:"driver"` // dir, btrfs, zfs, lvm …
	Status string            `json:"status"`
	Config map[string]string `json:"config"`
}

// GetStoragePool returns a storage pool (pools belong to no project);
// IsNotFound(err) when there is none.
func (c *Client) GetStoragePool(ctx context.Context, name string) (*StoragePool, error) {
	var p StoragePool
	if err := c.get(ctx, "/storage-pools/"+url.PathEscape(name), nil, &p); err != nil {
		return nil, fmt.Errorf("incus: get storage pool %q: %w", name, err)
	}
	return &p, nil
}

// StoragePoolResources is what GET /1.0/storage-pools/<name>/resources
// returns: the pool's space and inodes, in bytes and counts, as its
// driver sees them (a driver that cannot tell gives a total of 0).
type StoragePoolResources struct {
	Space  StoragePoolUsage `json:"space"`
	Inodes StoragePoolUsage `json:"inodes"`
}

// StoragePoolUsage is used of total.
type StoragePoolUsage struct {
	Used  uint64 `json:"used"`
	Total uint64 `json:"total"`
}

// GetStoragePoolResources returns a storage pool's space and inodes.
func (c *Client) GetStoragePoolResources(ctx context.Context, name string) (*StoragePoolResources, error) {
	var r StoragePoolResources
	if err := c.get(ctx, "/storage-pools/"+url.PathEscape(name)+"/resources", nil, &r); err != nil {
		return nil, fmt.Errorf("incus: get resources of storage pool %q: %w", name, err)
	}
	return &r, nil
}

// Network is what GET /1.0/networks/<name> returns (the fields we use).
type Network struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"` // bridge, physical …
	Managed bool              `json:"managed"`
	Config  map[string]string `json:"config"` // ipv4.address "10.77.0.1/24" …
}

// GetNetwork returns a network as the client's project sees it;
// IsNotFound(err) when there is none.
func (c *Client) GetNetwork(ctx context.Context, name string) (*Network, error) {
	var n Network
	if err := c.get(ctx, "/networks/"+url.PathEscape(name), nil, &n); err != nil {
		return nil, fmt.Errorf("incus: get network %q: %w", name, err)
	}
	return &n, nil
}
