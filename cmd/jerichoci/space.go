package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
)

// warnPoolSpace checks, as serve starts, the free space of the storage
// pool the guests' root disks are made in against workers × the guest
// disk size, and writes a warning to w when it is short or cannot be
// checked. Only a guest running a job writes to its disk: a warm
// instance holds the image's blocks, shared with the image on the
// copy-on-write pools, until a worker takes it for its job. It warns and does not refuse: the disk size is a
// quota, not a reservation, on the pools that enforce it (btrfs, zfs,
// thin lvm), so a pool smaller than the sum runs fine until guests
// actually fill their disks (docs/SECURITY.md, "Limits and their
// defaults").
func warnPoolSpace(ctx context.Context, w io.Writer, b executor.SpaceBackend, ec executor.Config, workers int, log *zap.Logger) {
	if ec.RootDiskSize == "" {
		log.Info("guest disk size unset (the profiles' root disk): the storage pool's space is not checked")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := executor.CheckPoolSpace(ctx, b, ec, workers)
	switch {
	case err != nil:
		fmt.Fprintf(w, "jerichoci serve: warning: could not check the storage pool's free space against the guests' disks: %v\n", err)
	case c.Total == 0:
		log.Info("the storage pool's driver does not report its size: its space is not checked", zap.String("pool", c.Pool), zap.String("driver", c.Driver))
	case c.Short():
		fmt.Fprintf(w, "jerichoci serve: warning: storage pool %s (%s) has %s free of %s, less than %d workers × guest disk %s = %s; "+
			"guests that fill their disks would fill the pool first, and then every guest on it fails to write; "+
			"lower --concurrency or --guest-disk-size, or grow the pool\n",
			c.Pool, c.Driver, gib(c.Free), gib(c.Total), workers, c.DiskSize, gib(c.Need))
	default:
		log.Info("storage pool space", zap.String("pool", c.Pool), zap.Uint64("free", c.Free), zap.Uint64("need", c.Need))
	}
}

// gib writes a byte count in GiB with two decimals.
func gib(n uint64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }
