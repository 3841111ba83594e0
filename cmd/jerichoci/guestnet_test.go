package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/executor"
	"jerichoci/executor/incus"
)

func TestGuestFlagsAndEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name        string
		env         map[string]string
		args        []string
		wantNetwork string // executor.Config's
		wantProcs   int
		wantErr     string
	}{
		{name: "defaults", wantNetwork: executor.DefaultGuestNetwork, wantProcs: executor.DefaultMaxProcesses},
		{name: "environment", env: map[string]string{envGuestNetwork: "ci-net", envGuestMaxProcesses: "300"}, wantNetwork: "ci-net", wantProcs: 300},
		{name: "flags win", env: map[string]string{envGuestNetwork: "ci-net", envGuestMaxProcesses: "300"},
			args: []string{"--guest-network", "other", "--guest-max-processes", "0"}, wantNetwork: "other", wantProcs: 0},
		{name: "profile keeps the profiles' NICs", args: []string{"--guest-network", "profile"}, wantNetwork: "", wantProcs: executor.DefaultMaxProcesses},
		{name: "empty network", args: []string{"--guest-network="}, wantErr: `--guest-network "" (env JERICHOCI_GUEST_NETWORK): expected an Incus bridge's name, or "profile"`},
		{name: "bad environment number", env: map[string]string{envGuestMaxProcesses: "lots"}, wantErr: `JERICHOCI_GUEST_MAX_PROCESSES="lots": expected a whole number`},
		{name: "negative", args: []string{"--guest-max-processes", "-1"}, wantErr: "guest max processes -1: expected a number >= 0"},
		{name: "too long", args: []string{"--guest-network", "a-very-long-bridge"}, wantErr: `guest network "a-very-long-bridge"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseExec(t, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ec := c.executorConfig()
			if ec.GuestNetwork != tc.wantNetwork || ec.MaxProcesses != tc.wantProcs {
				t.Errorf("executor config: network %q, max processes %d; want %q, %d", ec.GuestNetwork, ec.MaxProcesses, tc.wantNetwork, tc.wantProcs)
			}
		})
	}
}

type fakeNetworks map[string]*incus.Network

func (f fakeNetworks) GetNetwork(_ context.Context, name string) (*incus.Network, error) {
	if n, ok := f[name]; ok {
		return n, nil
	}
	return nil, &incus.StatusError{Method: "GET", Path: "/1.0/networks/" + name, Status: 404, Msg: "Network not found"}
}

func TestCheckGuestNetwork(t *testing.T) {
	nets := fakeNetworks{
		"jci-guests": {Name: "jci-guests", Type: "bridge", Managed: true},
		"eth0":       {Name: "eth0", Type: "physical"},
		"ovn0":       {Name: "ovn0", Type: "ovn", Managed: true},
	}
	for _, tc := range []struct{ name, want string }{
		{"jci-guests", ""},
		{"profile", ""},
		{"missing", "--guest-network missing (env JERICHOCI_GUEST_NETWORK): Incus has no such network; scripts/incus-up makes jci-guests"},
		{"eth0", "--guest-network eth0 (env JERICHOCI_GUEST_NETWORK): a physical network (managed false); want a managed bridge"},
		{"ovn0", "a ovn network (managed true); want a managed bridge"},
	} {
		err := checkGuestNetwork(t.Context(), nets, tc.name)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestGuestWarnings(t *testing.T) {
	pidMax := filepath.Join(t.TempDir(), "pid_max")
	if err := os.WriteFile(pidMax, []byte("32768\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		network   string
		procs     int
		instances int
		want      string // "" : no warning
	}{
		{"jci-guests", 4096, 4, ""},
		{"jci-guests", 4096, 8, "8 instances × --guest-max-processes 4096 = 32768 processes, at least the host's kernel.pid_max 32768"},
		{"jci-guests", 0, 1, "--guest-max-processes 0: a fork bomb in one guest can take every process slot of the host"},
		{"profile", 100, 1, "--guest-network profile: jobs' NICs are the profiles'"},
	} {
		c := defaultExecConfig()
		c.GuestNetwork, c.MaxProcesses = tc.network, tc.procs
		var buf bytes.Buffer
		guestWarnings(&buf, c, tc.instances, pidMax)
		got := buf.String()
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s %d×%d: warnings %q, want %q", tc.network, tc.instances, tc.procs, got, tc.want)
		}
	}
	var buf bytes.Buffer
	guestWarnings(&buf, defaultExecConfig(), 100, filepath.Join(t.TempDir(), "absent"))
	if buf.Len() != 0 {
		t.Errorf("without a pid_max file: %q, want no warning", buf.String())
	}
}
