package incus

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"jerichoci/executor"
)

// The storage pool's space, which serve checks against the guests' disks
// as it starts (executor.CheckPoolSpace).

func TestBackendPoolSpace(t *testing.T) {
	f := newFake(t)
	// The answer of incusd 6.0 for a 30 GiB btrfs pool.
	f.handle("GET", "/1.0/storage-pools/default/resources",
		syncJSON(`{"space":{"used":21659648,"total":32212254720},"inodes":{"used":0,"total":0}}`))
	f.handle("GET", "/1.0/storage-pools/broken/resources", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"type":"error","error":"Failed getting pool usage","error_code":500,"metadata":null}`))
	})
	b := NewBackend(f.client())
	got, err := b.PoolSpace(t.Context(), "default")
	if err != nil || got != (executor.PoolSpace{Used: 21659648, Total: 32212254720}) {
		t.Errorf("PoolSpace(default) = %+v, %v", got, err)
	}
	_, err = b.PoolSpace(t.Context(), "missing")
	if err == nil || !errors.Is(err, executor.ErrNotFound) || !strings.Contains(err.Error(), `incus: get resources of storage pool "missing": `) {
		t.Errorf("PoolSpace(missing) error = %v, want a not-found error naming the pool", err)
	}
	_, err = b.PoolSpace(t.Context(), "broken")
	if err == nil || errors.Is(err, executor.ErrNotFound) || !strings.Contains(err.Error(), "Failed getting pool usage") {
		t.Errorf("PoolSpace(broken) error = %v, want the server's error", err)
	}
	want := []string{"GET /1.0/storage-pools/default/resources?project=p", "GET /1.0/storage-pools/missing/resources?project=p",
		"GET /1.0/storage-pools/broken/resources?project=p"}
	if got := f.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests = %q, want %q", got, want)
	}
}

// TestIntegrationCheckPoolSpace asks the real incusd for the space of the
// pool of the guests' root disk.
func TestIntegrationCheckPoolSpace(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	cfg := executor.DefaultConfig()
	cfg.Project, cfg.Profile, cfg.RootDiskSize = itProject, itProfile, "1GiB"
	chk, err := executor.CheckPoolSpace(t.Context(), NewBackend(c), cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	root, err := NewBackend(c).RootDisk(t.Context(), []string{"default", itProfile})
	if err != nil {
		t.Fatal(err)
	}
	if chk.Pool != root.Pool || chk.Driver != root.Driver || chk.Guests != 3 || chk.Need != 3<<30 || chk.DiskSize != "1GiB" {
		t.Errorf("CheckPoolSpace() = %+v (root disk %+v)", chk, root)
	}
	res, err := c.GetStoragePoolResources(t.Context(), root.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if chk.Total != res.Space.Total || res.Space.Total == 0 || chk.Free == 0 || chk.Free > chk.Total {
		t.Errorf("CheckPoolSpace() = %+v, pool resources %+v", chk, res)
	}
	// More guests than the pool holds: short.
	huge := uint64(chk.Total)/(1<<30) + 1
	chk, err = executor.CheckPoolSpace(t.Context(), NewBackend(c), cfg, int(huge))
	if err != nil || !chk.Short() {
		t.Errorf("CheckPoolSpace(%d guests of 1GiB) = %+v, %v; want short", huge, chk, err)
	}
}
