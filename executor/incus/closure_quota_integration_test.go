package incus

// A guest that filled its disk quota is deleted by the first teardown
// (issue #20): btrfs quotas can make the deletion of a full subvolume
// fail, which would leave the instance to the reaper.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"jerichoci/executor"
	"jerichoci/model"
)

func TestIntegrationFullGuestDeletedOnFirstTeardown(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	for _, tc := range []struct {
		name       string
		background bool // the daemon's teardown, after the result; else jerichoci run's, before Execute returns
		writer     bool // a process left behind keeps writing to the full disk
	}{
		{name: "background teardown", background: true},
		{name: "teardown in Execute"},
		{name: "background teardown, still writing", background: true, writer: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			snapshot := t.TempDir()
			if err := os.Chmod(snapshot, 0o755); err != nil {
				t.Fatal(err)
			}
			var hostLog lockedBuffer
			role := model.RolePikaciRunner
			owner := uniqueName("jci-quota-")
			// The job user (uid 1000) writes its home until the quota
			// stops it.
			command := `dd if=/dev/zero of="$HOME/fill" bs=1M 2>&1; df -k /`
			if tc.writer {
				command += `; (while :; do echo x >> "$HOME/more"; touch "$HOME/f$RANDOM"; done) >/dev/null 2>&1 &`
			}
			job := executor.Job{RunID: uniqueName("run-"), ID: "fill-disk", TimeoutSecs: 300, Command: model.Shell(command),
				Runtime: model.IncusRuntimeFor(role), Image: model.IncusImage{Role: role, Alias: itAlias, Recorded: &role},
				SnapshotDir: snapshot, JobDir: t.TempDir(), HostLog: &hostLog}
			name := model.InstanceName(job.RunID, job.ID)
			detached := context.WithoutCancel(t.Context())
			t.Cleanup(func() { // only if the test failed to delete it
				ctx, cancel := context.WithTimeout(detached, 2*time.Minute)
				defer cancel()
				c.DeleteInstance(ctx, name)
			})
			cfg := executor.DefaultConfig()
			cfg.Project, cfg.Profile, cfg.Owner = itProject, itProfile, owner
			// Above the runner image (580 MiB unpacked), which the btrfs
			// quota counts from the start: a smaller one refuses the create.
			cfg.RootDiskSize = "1GiB"
			x := &executor.RemoteLinuxVM{Backend: NewBackend(c), Config: cfg, Log: zaptest.NewLogger(t)}
			var tds *executor.Teardowns
			if tc.background {
				tds = &executor.Teardowns{Log: zaptest.NewLogger(t), Tries: 1} // the first teardown only
				x.Teardowns = tds
			}
			// The guest runner writes its result to /run/pika-cloud, a host
			// directory of the instance's own (executor.Config.StateDirMount,
			// on by default; docs/INCUS.md, "Artifacts through a mounted
			// directory"), not to the full disk: the job ends with its
			// result (df, the last command, passes), and its instance is
			// torn down all the same.
			res, err := x.Execute(t.Context(), job)
			if err != nil || res.Status != model.StatusPassed || !strings.Contains(hostLog.String(), "Disk quota exceeded") {
				t.Fatalf("Execute() = %+v, %v; want a passed result after the quota stopped dd\nhost log:\n%s", res, err, hostLog.String())
			}
			if tds != nil {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
				defer cancel()
				if err := tds.Wait(ctx); err != nil {
					t.Fatal(err)
				}
				if st := tds.Stats(); st.Done != 1 || st.Failed != 0 {
					t.Errorf("teardowns = %+v, want 1 done at the first try, none failed", st)
				}
			}
			if hl := hostLog.String(); !strings.Contains(hl, "dd: error writing '/home/pikaci/fill': Disk quota exceeded") {
				t.Fatalf("the guest did not fill its disk:\n%s", hl)
			}
			assertGone(t, c, name)
			// Nothing for the reaper: no instance of this owner, no volume.
			left, err := c.ListInstances(t.Context(), Filter{Field: "config.user.jerichoci.owner", Value: owner})
			if err != nil || len(left) != 0 {
				t.Errorf("instances of owner %s left: %d, %v", owner, len(left), err)
			}
			root, err := NewBackend(c).RootDisk(t.Context(), []string{"default", itProfile})
			if err != nil {
				t.Fatal(err)
			}
			var vol map[string]any
			err = c.get(t.Context(), "/storage-pools/"+root.Pool+"/volumes/container/"+name, nil, &vol)
			if !IsNotFound(err) {
				t.Errorf("storage volume of %s: %v, %v; want not found", name, vol, err)
			}
		})
	}
}
