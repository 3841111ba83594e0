package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"

	"jerichoci/executor"
)

type fakeSpace struct {
	space executor.PoolSpace
	err   error
}

func (f fakeSpace) RootDisk(context.Context, []string) (executor.RootDisk, error) {
	return executor.RootDisk{Device: "root", Pool: "default", Driver: "btrfs"}, nil
}

func (f fakeSpace) PoolSpace(context.Context, string) (executor.PoolSpace, error) {
	return f.space, f.err
}

func TestWarnPoolSpace(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name    string
		be      fakeSpace
		size    string
		workers int
		want    string // the whole of stderr
	}{
		{name: "short", be: fakeSpace{space: executor.PoolSpace{Used: 1 * gib, Total: 30 * gib}}, size: "20GiB", workers: 2,
			want: "jerichoci serve: warning: storage pool default (btrfs) has 29.00 GiB free of 30.00 GiB, less than 2 workers × guest disk 20GiB = 40.00 GiB; " +
				"guests that fill their disks would fill the pool first, and then every guest on it fails to write; lower --concurrency or --guest-disk-size, or grow the pool\n"},
		{name: "enough", be: fakeSpace{space: executor.PoolSpace{Used: 1 * gib, Total: 100 * gib}}, size: "20GiB", workers: 2},
		// make run's first minute: the defaults on the pool scripts/incus-up makes
		// (30 GiB, the images in it) warn about nothing.
		{name: "defaults on incus-up's pool", be: fakeSpace{space: executor.PoolSpace{Used: gib * 7 / 10, Total: 30 * gib}}, size: executor.DefaultConfig().RootDiskSize, workers: 2},
		{name: "not reported", be: fakeSpace{}, size: "20GiB", workers: 2},
		{name: "no disk size", be: fakeSpace{err: errors.New("not asked")}, size: "", workers: 2},
		{name: "cannot check", be: fakeSpace{err: errors.New("no answer")}, size: "20GiB", workers: 1,
			want: "jerichoci serve: warning: could not check the storage pool's free space against the guests' disks: look up the space of storage pool `default`: no answer\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			ec := executor.DefaultConfig()
			ec.RootDiskSize = tc.size
			warnPoolSpace(t.Context(), &stderr, tc.be, ec, tc.workers, zap.NewNop())
			if stderr.String() != tc.want {
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestGuestDiskSizeSetting(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
		wantErr   string
	}{
		{name: "default", want: "12GiB"},
		{name: "env", env: "2GiB", want: "2GiB"},
		{name: "flag over env", env: "2GiB", args: []string{"--guest-disk-size", "512MiB"}, want: "512MiB"},
		{name: "empty flag keeps the profiles' disk", args: []string{"--guest-disk-size", ""}, want: ""},
		{name: "bad", args: []string{"--guest-disk-size", "lots"}, wantErr: `--guest-disk-size "lots" (env JERICHOCI_GUEST_DISK_SIZE): root disk size: "lots" is not a size`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			if tc.env != "" {
				env["JERICHOCI_GUEST_DISK_SIZE"] = tc.env
			}
			c, err := parseExec(t, env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.executorConfig().RootDiskSize != tc.want {
				t.Errorf("root disk size = %q, %v; want %q", c.executorConfig().RootDiskSize, err, tc.want)
			}
		})
	}
}
