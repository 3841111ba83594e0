package executor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"jerichoci/internal/units"
	"jerichoci/model"
)

// Config configures the remote Linux VM executor.
type Config struct {
	Project    string // PIKACI_REMOTE_LINUX_VM_INCUS_PROJECT
	Profile    string // PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE
	Host       string // the Incus host named in messages ("localhost")
	RunnerPath string // the guest runner
	Owner      string // the worker that owns the instances
	Fleet      string // the daemon fleet, "" for jerichoci run
	// Process names the creating process (ConfigProcess), "" for none.
	Process      string
	InstanceType model.InstanceType
	// ReadyTimeout bounds the wait for the guest to accept exec.
	ReadyTimeout time.Duration
	// CleanupTimeout bounds teardown, which runs on a detached context.
	CleanupTimeout time.Duration
	// HostLogRunnerBytes caps the runner output repeated in host.log
	// (artifacts/guest.log keeps all of it): 0 means the default, 1 MiB;
	// negative means no cap.
	HostLogRunnerBytes int64
	// RootDiskSize is the size of each guest's root disk, an Incus size
	// (20GiB, 512MiB, or bytes); empty leaves the profiles' root disk as
	// it is.
	RootDiskSize string
	// GuestNetwork is the managed bridge each instance gets its one NIC
	// on, eth0, with MAC, IPv4 and IPv6 filtering and port isolation, in
	// place of the profiles' NICs; "" leaves the NICs to the profiles
	// (docs/INCUS.md, "The jobs' network").
	GuestNetwork string
	// MaxProcesses is limits.processes of each instance (the pids cgroup
	// of a container: processes and threads); 0 sets no limit.
	MaxProcesses int
	// Transfer is how the snapshot, the guest request and staged outputs
	// reach the guest: TransferMounts ("" too) or TransferAPI.
	Transfer Transfer
	// StateDirMount gives containers their state directory (GuestDir) as
	// a host directory, in TransferMounts (statedir.go), so artifacts come
	// back without a round trip to incusd. On by default, and never for a
	// job with a secret environment: the runner's guest.log there is the
	// unmasked output, which holds a secret the job prints, and a secret
	// must not reach the worker's disk (docs/SECURITY.md).
	StateDirMount bool
	// MaxOutputBytes caps a job's runner output (stdout and stderr
	// together): past it the rest is dropped, the runner is stopped and
	// the job fails (output.go). A guest's output reaches the worker's
	// disk (artifacts/guest.log), so an endless printer must not fill it.
	// 0: no cap.
	MaxOutputBytes int64
}

// profiles are the profiles of every instance, in order.
func (c Config) profiles() []string { return []string{"default", c.Profile} }

// DefaultHostLogRunnerBytes is the default of Config.HostLogRunnerBytes.
const DefaultHostLogRunnerBytes = 1 << 20

// DefaultConfig returns the original's defaults.
func DefaultConfig() Config {
	return Config{
		Project: "pika-managed-agents", Profile: "pika-agent-dev", Host: "localhost",
		RunnerPath: DefaultRunnerPath, InstanceType: model.InstanceAuto,
		ReadyTimeout: 120 * time.Second, CleanupTimeout: 2 * time.Minute,
		HostLogRunnerBytes: DefaultHostLogRunnerBytes, RootDiskSize: "12GiB",
		GuestNetwork: DefaultGuestNetwork, MaxProcesses: DefaultMaxProcesses,
		StateDirMount: true, MaxOutputBytes: DefaultMaxOutputBytes,
	}
}

// DefaultMaxOutputBytes is the default of Config.MaxOutputBytes.
const DefaultMaxOutputBytes = 1 << 30

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxOutputBytes < 0 {
		errs = append(errs, fmt.Errorf("job output limit %d: expected a size >= 0 (0: no limit)", c.MaxOutputBytes))
	}
	if c.Project == "" {
		errs = append(errs, errors.New("runtime spec field `project` must be non-empty"))
	}
	if strings.TrimSpace(c.Profile) == "" {
		errs = append(errs, errors.New("runtime spec field `profile` must be non-empty"))
	}
	if c.RunnerPath == "" || c.RunnerPath[0] != '/' {
		errs = append(errs, fmt.Errorf("guest runner path %q must be absolute", c.RunnerPath))
	}
	if c.InstanceType != "" && !c.InstanceType.Valid() {
		errs = append(errs, fmt.Errorf("instance type %q: expected auto, virtual-machine or container", c.InstanceType))
	}
	if c.RootDiskSize != "" {
		if _, err := rootDiskSize(c.RootDiskSize); err != nil {
			errs = append(errs, fmt.Errorf("root disk size: %w", err))
		}
	}
	if !c.Transfer.Valid() {
		errs = append(errs, fmt.Errorf("transfer %q: expected %s or %s", c.Transfer, TransferMounts, TransferAPI))
	}
	errs = append(errs, validateGuestLimits(c.GuestNetwork, c.MaxProcesses))
	return errors.Join(errs...)
}

// rootDiskSize reads a guest root disk size, an Incus size
// (units.ParseSize): a disk of no bytes is refused.
func rootDiskSize(s string) (int64, error) {
	n, err := units.ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("size %q is not positive", s)
	}
	return n, nil
}

func cleanupTimeout(cfg Config) time.Duration {
	if cfg.CleanupTimeout <= 0 {
		return 2 * time.Minute
	}
	return cfg.CleanupTimeout
}

// readyTimeout is how long a new instance has to accept exec (Config.ReadyTimeout).
func readyTimeout(cfg Config) time.Duration {
	if cfg.ReadyTimeout <= 0 {
		return 120 * time.Second
	}
	return cfg.ReadyTimeout
}
