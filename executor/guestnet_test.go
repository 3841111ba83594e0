package executor

import (
	"strings"
	"testing"

	"jerichoci/model"
)

// Every instance the executor makes, a job's or the warm pool's, gets the
// guest network and the process limit of its Config.
func TestInstancesGetTheGuestNetworkAndProcessLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		network   string
		procs     int
		wantLimit string // "" : no limits.processes key
	}{
		{"defaults", DefaultGuestNetwork, DefaultMaxProcesses, "4096"},
		{"other network and limit", "ci-net0", 300, "300"},
		{"profiles' NIC, no limit", "", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.GuestNetwork, cfg.MaxProcesses = tc.network, tc.procs
			be := &fakeBackend{images: map[string]string{"pikaci/dev": "fp1"}, result: passedResult}
			pool := newPool(t, be)
			pool.Config.GuestNetwork, pool.Config.MaxProcesses = tc.network, tc.procs
			pool.Want("pikaci/dev", model.InstanceContainer, "fp1")
			pool.fill(t.Context())
			x := &RemoteLinuxVM{Backend: be, Config: cfg}
			x.Config.Owner = "worker-1"
			var log syncBuf
			if _, err := x.Execute(t.Context(), newJob(t, &log)); err != nil {
				t.Fatal(err)
			}
			if len(be.created) != 2 {
				t.Fatalf("%d instances created, want the pool's and the job's", len(be.created))
			}
			for i, spec := range be.created {
				what := [...]string{"pool instance", "job instance"}[i]
				limit, ok := spec.Config["limits.processes"]
				if spec.Network != tc.network || limit != tc.wantLimit || ok != (tc.wantLimit != "") {
					t.Errorf("%s: network %q, limits.processes %q (set %t); want %q, %q", what, spec.Network, limit, ok, tc.network, tc.wantLimit)
				}
			}
		})
	}
}

func TestConfigValidateGuestNetworkAndProcesses(t *testing.T) {
	for _, tc := range []struct {
		network string
		procs   int
		want    string // "" : valid
	}{
		{"jci-guests", 4096, ""},
		{"", 0, ""},
		{"a23456789012345", 1, ""},
		{"a234567890123456", 1, `guest network "a234567890123456"`},
		{"-x", 1, `guest network "-x"`},
		{"br 0", 1, `guest network "br 0"`},
		{"jci-guests", -1, "guest max processes -1: expected a number >= 0 (0: no limit)"},
	} {
		cfg := DefaultConfig()
		cfg.GuestNetwork, cfg.MaxProcesses = tc.network, tc.procs
		err := cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q, %d: %v", tc.network, tc.procs, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q, %d: error %v, want one containing %q", tc.network, tc.procs, err, tc.want)
		}
	}
}
