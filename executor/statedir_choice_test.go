package executor

import (
	"context"
	"os"
	"testing"

	"jerichoci/internal/mask"
)

// mappedBackend is a fakeBackend that tells the guest's root ids (this
// process's own), so that a container may get its state directory from
// the host.
type mappedBackend struct{ *fakeBackend }

func (mappedBackend) GuestRootIDs(context.Context, string) (int, int, error) {
	return os.Getuid(), os.Getgid(), nil
}

// The state directory is mounted from the host by default, except for a
// job with a secret environment (its unmasked guest.log would be on the
// worker's disk), and never when the config turns it off.
func TestStateDirMountedOnlyWithoutSecrets(t *testing.T) {
	tests := []struct {
		name      string
		mountCfg  bool
		secret    bool
		wantMount bool
	}{
		{"default, no secret: mounted", true, false, true},
		{"default, a secret: not mounted", true, true, false},
		{"turned off, no secret: not mounted", false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}}
			x := &RemoteLinuxVM{Backend: mappedBackend{be}, Config: DefaultConfig()}
			x.Config.Owner = "worker-1"
			x.Config.StateDirMount = tc.mountCfg
			var log syncBuf
			job := newJob(t, &log)
			if tc.secret {
				job.SecretEnv = map[string]string{"API_TOKEN": "tok-SECRET-1"}
				job.Mask = mask.New("tok-SECRET-1")
			}
			_, _ = x.Execute(t.Context(), job) // the fake runner writes no result in a host dir; only the spec matters
			if len(be.created) != 1 {
				t.Fatalf("created %d instances, want 1", len(be.created))
			}
			mounted := false
			for _, d := range be.created[0].Disks {
				if d.Name == stateDeviceName {
					mounted = d.Path == GuestDir
				}
			}
			if mounted != tc.wantMount {
				t.Errorf("state directory mounted %v, want %v (disks %+v)", mounted, tc.wantMount, be.created[0].Disks)
			}
		})
	}
	if !DefaultConfig().StateDirMount {
		t.Error("DefaultConfig().StateDirMount is false: the mounted state directory is the default")
	}
}
