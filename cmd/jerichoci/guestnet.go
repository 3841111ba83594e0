package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"jerichoci/executor/incus"
)

// networkGetter is what the guest network check needs of Incus.
type networkGetter interface {
	GetNetwork(ctx context.Context, name string) (*incus.Network, error)
}

// checkGuestNetwork refuses a --guest-network that Incus does not have as
// a managed bridge: the jobs' NIC filtering and port isolation are a
// bridged NIC's (docs/INCUS.md, "The jobs' network").
func checkGuestNetwork(ctx context.Context, cl networkGetter, name string) error {
	if name == "" || name == guestNetworkProfile {
		return nil
	}
	n, err := cl.GetNetwork(ctx, name)
	if incus.IsNotFound(err) {
		return fmt.Errorf("--guest-network %s (env %s): Incus has no such network; scripts/incus-up makes %s, or name another managed bridge", name, envGuestNetwork, "jci-guests")
	}
	if err != nil {
		return fmt.Errorf("--guest-network %s: %w", name, err)
	}
	if !n.Managed || n.Type != "bridge" {
		return fmt.Errorf("--guest-network %s (env %s): a %s network (managed %t); want a managed bridge, or %q to keep the profiles' NICs", name, envGuestNetwork, n.Type, n.Managed, guestNetworkProfile)
	}
	return nil
}

// guestWarnings prints what weakens the guests' isolation: NICs left to
// the profiles, no process limit, or process limits that together reach
// the host's kernel.pid_max (read from pidMaxFile; unreadable: no check).
func guestWarnings(w io.Writer, cfg execConfig, instances int, pidMaxFile string) {
	if cfg.GuestNetwork == guestNetworkProfile {
		fmt.Fprintln(w, "jerichoci serve: warning: --guest-network profile: jobs' NICs are the profiles', without jerichoci's filtering and port isolation; guests may reach each other and the host unless the profiles' network prevents it")
	}
	if cfg.MaxProcesses == 0 {
		fmt.Fprintln(w, "jerichoci serve: warning: --guest-max-processes 0: a fork bomb in one guest can take every process slot of the host")
		return
	}
	b, err := os.ReadFile(pidMaxFile)
	if err != nil {
		return
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pidMax <= 0 {
		return
	}
	if total := instances * cfg.MaxProcesses; total >= pidMax {
		fmt.Fprintf(w, "jerichoci serve: warning: %d instances × --guest-max-processes %d = %d processes, at least the host's kernel.pid_max %d: guests together could take every process slot of the host\n",
			instances, cfg.MaxProcesses, total, pidMax)
	}
}
