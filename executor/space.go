package executor

import (
	"context"
	"errors"
	"fmt"
)

// PoolSpace is the space of a storage pool, in bytes.
type PoolSpace struct {
	Used, Total uint64
}

// SpaceBackend is what CheckPoolSpace asks of the instance manager; the
// Incus backend is one.
type SpaceBackend interface {
	RootDisk(ctx context.Context, profiles []string) (RootDisk, error)
	PoolSpace(ctx context.Context, pool string) (PoolSpace, error)
}

// SpaceCheck compares the free space of the pool the guests' root disks
// are made in with what guests root disks of cfg.RootDiskSize can take.
type SpaceCheck struct {
	Pool, Driver string
	Free, Total  uint64 // of the pool; Total 0: the driver does not tell
	Guests       int    // instances that can exist at once
	DiskSize     string // each one's root disk, as configured
	Need         uint64 // Guests × DiskSize in bytes
}

// Short reports whether guests that fill their disks would fill the
// pool first; a pool whose driver does not report its size is not.
func (s SpaceCheck) Short() bool { return s.Total > 0 && s.Need > s.Free }

// CheckPoolSpace looks up the pool of the guests' root disk (cfg's
// project and profiles) and its free space, for guests instances at
// once, each with a root disk of cfg.RootDiskSize, which must be set.
// The sizes are quotas, not reservations, on the pools that enforce
// them (btrfs, zfs, thin lvm): only a guest that writes uses the space.
func CheckPoolSpace(ctx context.Context, b SpaceBackend, cfg Config, guests int) (SpaceCheck, error) {
	if cfg.RootDiskSize == "" {
		return SpaceCheck{}, errors.New("no guest root disk size is configured: there is nothing to compare the pool's space with")
	}
	size, err := rootDiskSize(cfg.RootDiskSize)
	if err != nil {
		return SpaceCheck{}, fmt.Errorf("guest root disk size: %w", err)
	}
	profiles := cfg.profiles()
	root, err := b.RootDisk(ctx, profiles)
	if err != nil {
		return SpaceCheck{}, fmt.Errorf("look up the root disk of profiles %q in project `%s`: %w", profiles, cfg.Project, err)
	}
	space, err := b.PoolSpace(ctx, root.Pool)
	if err != nil {
		return SpaceCheck{}, fmt.Errorf("look up the space of storage pool `%s`: %w", root.Pool, err)
	}
	c := SpaceCheck{Pool: root.Pool, Driver: root.Driver, Total: space.Total, Guests: guests, DiskSize: cfg.RootDiskSize}
	if space.Total > space.Used {
		c.Free = space.Total - space.Used
	}
	if guests > 0 {
		c.Need = uint64(guests) * uint64(size)
		if c.Need/uint64(guests) != uint64(size) { // overflow: more than any pool
			c.Need = ^uint64(0)
		}
	}
	return c, nil
}
