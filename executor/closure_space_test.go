package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeSpace is a SpaceBackend with one pool.
type fakeSpace struct {
	root     RootDisk
	rootErr  error
	space    PoolSpace
	spaceErr error
	asked    []string
}

func (f *fakeSpace) RootDisk(_ context.Context, profiles []string) (RootDisk, error) {
	f.asked = append(f.asked, strings.Join(profiles, ","))
	return f.root, f.rootErr
}

func (f *fakeSpace) PoolSpace(_ context.Context, pool string) (PoolSpace, error) {
	f.asked = append(f.asked, "pool:"+pool)
	return f.space, f.spaceErr
}

func TestCheckPoolSpace(t *testing.T) {
	const gib = 1 << 30
	pool := RootDisk{Device: "root", Pool: "default", Driver: "btrfs"}
	for _, tc := range []struct {
		name      string
		be        fakeSpace
		size      string
		guests    int
		want      SpaceCheck
		wantShort bool
		wantErr   string
	}{
		{name: "enough", be: fakeSpace{root: pool, space: PoolSpace{Used: 10 * gib, Total: 100 * gib}}, size: "20GiB", guests: 4,
			want: SpaceCheck{Pool: "default", Driver: "btrfs", Free: 90 * gib, Total: 100 * gib, Guests: 4, DiskSize: "20GiB", Need: 80 * gib}},
		{name: "short", be: fakeSpace{root: pool, space: PoolSpace{Used: gib, Total: 30 * gib}}, size: "20GiB", guests: 4, wantShort: true,
			want: SpaceCheck{Pool: "default", Driver: "btrfs", Free: 29 * gib, Total: 30 * gib, Guests: 4, DiskSize: "20GiB", Need: 80 * gib}},
		{name: "exactly full", be: fakeSpace{root: pool, space: PoolSpace{Used: 0, Total: 40 * gib}}, size: "20GiB", guests: 2,
			want: SpaceCheck{Pool: "default", Driver: "btrfs", Free: 40 * gib, Total: 40 * gib, Guests: 2, DiskSize: "20GiB", Need: 40 * gib}},
		{name: "used beyond total", be: fakeSpace{root: pool, space: PoolSpace{Used: 50 * gib, Total: 40 * gib}}, size: "1GiB", guests: 1, wantShort: true,
			want: SpaceCheck{Pool: "default", Driver: "btrfs", Total: 40 * gib, Guests: 1, DiskSize: "1GiB", Need: gib}},
		{name: "size not reported", be: fakeSpace{root: RootDisk{Pool: "d", Driver: "dir"}}, size: "20GiB", guests: 4,
			want: SpaceCheck{Pool: "d", Driver: "dir", Guests: 4, DiskSize: "20GiB", Need: 80 * gib}},
		{name: "overflow", be: fakeSpace{root: pool, space: PoolSpace{Total: 100 * gib}}, size: "4EiB", guests: 8, wantShort: true,
			want: SpaceCheck{Pool: "default", Driver: "btrfs", Free: 100 * gib, Total: 100 * gib, Guests: 8, DiskSize: "4EiB", Need: ^uint64(0)}},
		{name: "no size", be: fakeSpace{root: pool}, size: "", guests: 1, wantErr: "no guest root disk size is configured: there is nothing to compare the pool's space with"},
		{name: "root disk error", be: fakeSpace{rootErr: errors.New("profile gone")}, size: "1GiB", guests: 1,
			wantErr: "look up the root disk of profiles [\"default\" \"pika-agent-dev\"] in project `pika-managed-agents`: profile gone"},
		{name: "pool error", be: fakeSpace{root: pool, spaceErr: errors.New("no answer")}, size: "1GiB", guests: 1,
			wantErr: "look up the space of storage pool `default`: no answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.RootDiskSize = tc.size
			got, err := CheckPoolSpace(t.Context(), &tc.be, cfg, tc.guests)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || got.Short() != tc.wantShort {
				t.Fatalf("CheckPoolSpace() = %+v (short %v), %v; want %+v (short %v)", got, got.Short(), err, tc.want, tc.wantShort)
			}
			if want := "default,pika-agent-dev pool:" + tc.want.Pool; strings.Join(tc.be.asked, " ") != want {
				t.Errorf("asked %q, want %q", tc.be.asked, want)
			}
		})
	}
}
