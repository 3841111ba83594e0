package incus

// What a teardown costs incusd, against the real daemon (docs/BENCHMARKS.md,
// "Teardown"): each round creates and starts three containers (not timed)
// and tears each down one way (timed): the adapter's DeleteInstance as
// jobs use it, a force stop then a delete (the least the 6.0 API allows
// for a running instance: it has no forced delete), and a force stop of
// an ephemeral instance, which incusd deletes by itself (timed until it
// is gone). Run: go test ./executor/incus -run '^$' -bench TeardownCost -benchtime 20x

import (
	"context"
	"os"
	"sort"
	"testing"
	"time"
)

func BenchmarkTeardownCost(b *testing.B) {
	sock, err := SocketPath(os.LookupEnv)
	if err != nil {
		b.Skipf("no incusd: %v", err)
	}
	c, err := NewUnix(sock, WithProject(itProject))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.GetImageAlias(ctx, itAlias); err != nil {
		b.Skipf("image alias %s missing in project %s: %v", itAlias, itProject, err)
	}
	ways := []struct {
		name      string
		ephemeral bool
		down      func(name string) error
	}{
		{"DeleteInstance", false, func(name string) error { return c.DeleteInstance(ctx, name) }},
		{"stop-then-delete", false, func(name string) error {
			if err := c.ForceStopInstance(ctx, name); err != nil {
				return err
			}
			return c.deleteOnce(ctx, name)
		}},
		{"ephemeral-stop", true, func(name string) error {
			if err := c.ForceStopInstance(ctx, name); err != nil {
				return err
			}
			for {
				if _, err := c.GetInstance(ctx, name); IsNotFound(err) {
					return nil
				}
				time.Sleep(5 * time.Millisecond)
			}
		}},
	}
	took := make([][]time.Duration, len(ways))
	b.ResetTimer()
	for range b.N {
		for i, w := range ways {
			name := uniqueName("jci-tdcost-")
			b.StopTimer()
			post := teardownPost(name, true)
			post.Ephemeral = w.ephemeral
			post.Config = map[string]string{"user.jerichoci.owner": "jerichoci-bench/teardown"}
			if err := c.CreateInstance(ctx, post); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if err := w.down(name); err != nil {
				_ = c.DeleteInstance(ctx, name)
				b.Fatal(err)
			}
			took[i] = append(took[i], time.Since(start))
		}
	}
	b.StopTimer()
	for i, w := range ways {
		d := took[i]
		sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
		b.ReportMetric(float64(d[len(d)/2].Milliseconds()), w.name+"-median-ms")
	}
}
