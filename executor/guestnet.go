package executor

import (
	"errors"
	"fmt"
	"strconv"
)

// DefaultGuestNetwork is the bridge scripts/incus-up makes for jobs'
// guests (docs/INCUS.md, "The jobs' network").
const DefaultGuestNetwork = "jci-guests"

// DefaultMaxProcesses is the default limits.processes of an instance: room
// for parallel builds and their threads, while a fork bomb in a few guests
// leaves most of a default kernel.pid_max (32768) to the host.
const DefaultMaxProcesses = 4096

// guestIsolation puts the executor's guest network and process limit on
// spec: jobs' and warm-pool instances alike (docs/SECURITY.md).
func guestIsolation(spec *InstanceSpec, cfg Config) {
	spec.Network = cfg.GuestNetwork
	if cfg.MaxProcesses > 0 {
		spec.Config["limits.processes"] = strconv.Itoa(cfg.MaxProcesses)
	}
}

// validateGuestLimits checks the guest network's name (a Linux interface
// name, as Incus names a bridge's) and the process limit.
func validateGuestLimits(network string, maxProcs int) error {
	var errs []error
	if network != "" && !validIfName(network) {
		errs = append(errs, fmt.Errorf("guest network %q: expected the name of an Incus bridge (at most 15 letters, digits, '-', '_' or '.', not starting with '-')", network))
	}
	if maxProcs < 0 {
		errs = append(errs, fmt.Errorf("guest max processes %d: expected a number >= 0 (0: no limit)", maxProcs))
	}
	return errors.Join(errs...)
}

// validIfName: what Incus accepts as a bridge network's name.
func validIfName(s string) bool {
	if s == "" || len(s) > 15 || s[0] == '-' || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
