package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"jerichoci/executor"
	"jerichoci/executor/incus"
	"jerichoci/internal/termsafe"
	"jerichoci/internal/units"
	"jerichoci/model"
)

// execConfig is everything a run needs to reach Incus and keep its state:
// defaults, then the environment, then flags; Validate reports every problem.
type execConfig struct {
	StateRoot     string
	Socket        string
	Project       string
	Profile       string
	InstanceType  string
	RunnerPath    string
	GuestDiskSize string
	MaxConcurrent int
	Owner         string
	LogLevel      string
	// GuestNetwork is the network of every instance's one NIC;
	// guestNetworkProfile leaves the NICs to the profiles.
	GuestNetwork string
	// MaxProcesses is each instance's limits.processes; 0: no limit.
	MaxProcesses int
	// Nix is the nix program of staged builds and host-local dev shells;
	// "" is nix on PATH.
	Nix string
	// Remote is incusd over HTTPS; empty: the unix socket.
	Remote incusRemote
	// Transfer is --incus-transfer: mounts, api or auto (transfer.go).
	Transfer string
	// StateMount is --guest-state-mount: executor.Config.StateDirMount.
	StateMount bool
	// MaxOutput is --max-job-output: executor.Config.MaxOutputBytes.
	MaxOutput int64
	envErrs   []error // unparsable environment values
}

// guestNetworkProfile, as --guest-network, keeps the profiles' NICs.
const guestNetworkProfile = "profile"

func defaultExecConfig() execConfig {
	d := executor.DefaultConfig()
	cwd, _ := os.Getwd()
	host, _ := os.Hostname()
	return execConfig{
		StateRoot: filepath.Join(cwd, ".pikaci"), Project: d.Project, Profile: d.Profile,
		InstanceType: string(d.InstanceType), RunnerPath: d.RunnerPath, GuestDiskSize: d.RootDiskSize, MaxConcurrent: 2,
		Owner: fmt.Sprintf("%s-%d", host, os.Getpid()), LogLevel: "warn",
		GuestNetwork: d.GuestNetwork, MaxProcesses: d.MaxProcesses, StateMount: d.StateDirMount,
		MaxOutput: d.MaxOutputBytes,
	}
}

// fromEnv applies the environment; problems are reported by Validate.
func (c *execConfig) fromEnv(env func(string) (string, bool)) {
	str := func(key string, dst *string) {
		if v, ok := env(key); ok && v != "" {
			*dst = v
		}
	}
	str(envStateRoot, &c.StateRoot)
	str(incus.SocketEnv, &c.Socket)
	c.Remote.fromEnv(env)
	// The project is not trimmed; set but empty is an error, as in the original.
	if v, ok := env("PIKACI_REMOTE_LINUX_VM_INCUS_PROJECT"); ok {
		c.Project = v
	}
	// Nor is the profile: set but blank fails each Incus job, as in the
	// original (remote.go, profileProblem).
	if v, ok := env(envProfile); ok {
		c.Profile = v
	}
	str("JERICHOCI_INSTANCE_TYPE", &c.InstanceType)
	str("JERICHOCI_GUEST_RUNNER", &c.RunnerPath)
	str("JERICHOCI_GUEST_DISK_SIZE", &c.GuestDiskSize)
	str("JERICHOCI_OWNER", &c.Owner)
	str("JERICHOCI_LOG_LEVEL", &c.LogLevel)
	str(envGuestNetwork, &c.GuestNetwork)
	str(envNix, &c.Nix)
	str(envIncusTransfer, &c.Transfer)
	if v, ok := env(envGuestMaxProcesses); ok && strings.TrimSpace(v) != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: expected a whole number of processes (0: no limit)", envGuestMaxProcesses, v))
		} else {
			c.MaxProcesses = n
		}
	}
	if v, ok := env(envMaxJobOutput); ok && strings.TrimSpace(v) != "" {
		if n, err := units.ParseSize(strings.TrimSpace(v)); err != nil {
			c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", envMaxJobOutput, v, err))
		} else {
			c.MaxOutput = n
		}
	}
	if v, ok := env(envGuestStateMount); ok && strings.TrimSpace(v) != "" {
		if b, err := strconv.ParseBool(strings.TrimSpace(v)); err != nil {
			c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: expected true or false", envGuestStateMount, v))
		} else {
			c.StateMount = b
		}
	}
	if v, ok := env("PIKACI_MAX_CONCURRENT_EXECUTES"); ok {
		// The original: a positive integer; unparsable or 0 means 2.
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			c.MaxConcurrent = n
		} else {
			c.MaxConcurrent = 2
		}
	}
}

// flags registers the flags that override the environment.
func (c *execConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.StateRoot, "state-root", c.StateRoot, "state `DIR` for run records (env PIKACI_STATE_ROOT)")
	fs.StringVar(&c.InstanceType, "instance-type", c.InstanceType, "Incus instance `TYPE`: auto, container or virtual-machine (env JERICHOCI_INSTANCE_TYPE)")
	fs.StringVar(&c.GuestDiskSize, "guest-disk-size", c.GuestDiskSize, "root disk `SIZE` of each guest, an Incus size such as 12GiB; empty keeps the profiles' root disk (env JERICHOCI_GUEST_DISK_SIZE)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log `LEVEL` on stderr: debug, info, warn, error (env JERICHOCI_LOG_LEVEL)")
	fs.StringVar(&c.GuestNetwork, "guest-network", c.GuestNetwork, "Incus bridge `NAME` every job's instance gets its one NIC on, filtered (MAC, IPv4, IPv6) and port-isolated, in place of the profiles' NICs; scripts/incus-up makes jci-guests and the host firewall that keeps its guests off the host and each other; 'profile' keeps the profiles' NICs unfiltered (env "+envGuestNetwork+"; docs/INCUS.md)")
	fs.StringVar(&c.Nix, "nix", c.Nix, "the nix `PROGRAM` that builds staged outputs and host-local dev shells, a path or a name on PATH; scripts/nix-current-up puts Debian 13's Nix at /var/lib/jerichoci/nix-current/bin/nix (env "+envNix+"; default nix)")
	c.Remote.flags(fs)
	c.transferFlag(fs)
	fs.IntVar(&c.MaxProcesses, "guest-max-processes", c.MaxProcesses, "limits.processes of every job's instance: `N` processes and threads at most in the guest; 0: no limit (env "+envGuestMaxProcesses+")")
	fs.Var(sizeFlag{&c.MaxOutput}, "max-job-output", "cap of a guest job's output (stdout and stderr together), such as 1GiB: past it the rest is dropped, the job stopped and failed; 0: no cap, not safe with untrusted branches (env "+envMaxJobOutput+")")
	fs.BoolVar(&c.StateMount, "guest-state-mount", c.StateMount, "give each container without a secret environment its state directory (/run/pika-cloud) as a host directory, so artifacts come back without a round trip to incusd; in --incus-transfer mounts only; false collects them as one archive over exec (env "+envGuestStateMount+"; docs/INCUS.md)")
}

// The original's variables that the environment handling reads besides
// the flags' twins.
const (
	envProfile = "PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE"
	// envRemovedLanes is the original's removed backend selector.
	envRemovedLanes = "PIKACI_REMOTE_LINUX_VM_INCUS_LANES"
)

// removedEnv refuses a variable the original removed, as it does before
// any command runs: set to anything but blanks is an error.
func removedEnv(env func(string) (string, bool)) error {
	if env == nil {
		return nil
	}
	if v, ok := env(envRemovedLanes); ok && strings.TrimSpace(v) != "" {
		return errors.New(envRemovedLanes + " has been removed; use PIKACI_REMOTE_LINUX_VM_BACKEND=incus|auto")
	}
	return nil
}

// Environment twins of --guest-network and --guest-max-processes.
const (
	envGuestNetwork      = "JERICHOCI_GUEST_NETWORK"
	envGuestMaxProcesses = "JERICHOCI_GUEST_MAX_PROCESSES"
	// envNix is the twin of --nix.
	envNix = "JERICHOCI_NIX"
	// envMaxJobOutput is the twin of --max-job-output.
	envMaxJobOutput = "JERICHOCI_MAX_JOB_OUTPUT"
	// envGuestStateMount is the twin of --guest-state-mount.
	envGuestStateMount = "JERICHOCI_GUEST_STATE_MOUNT"
)

func (c execConfig) executorConfig() executor.Config {
	d := executor.DefaultConfig()
	d.Project, d.Profile, d.RunnerPath, d.Owner = c.Project, c.Profile, c.RunnerPath, c.Owner
	d.Process = thisProcess()
	d.InstanceType = model.InstanceType(c.InstanceType)
	d.RootDiskSize = c.GuestDiskSize
	d.GuestNetwork, d.MaxProcesses = c.GuestNetwork, c.MaxProcesses
	d.Transfer = resolveTransfer(c.Transfer, c.Remote.remote())
	d.StateDirMount = c.StateMount
	d.MaxOutputBytes = c.MaxOutput
	if c.GuestNetwork == guestNetworkProfile {
		d.GuestNetwork = ""
	}
	return d
}

// Validate reports every problem at once.
func (c execConfig) Validate() error {
	errs := append([]error{}, c.envErrs...)
	errs = append(errs, c.Remote.Validate())
	errs = append(errs, c.transferErr())
	if c.GuestNetwork == "" {
		errs = append(errs, fmt.Errorf("--guest-network \"\" (env %s): expected an Incus bridge's name, or %q to keep the profiles' NICs", envGuestNetwork, guestNetworkProfile))
	}
	if c.StateRoot == "" {
		errs = append(errs, errors.New("state root: must be a directory path, got \"\""))
	}
	if c.Nix != "" {
		if _, err := exec.LookPath(c.Nix); err != nil {
			errs = append(errs, fmt.Errorf("--nix %q (env %s): expected the nix program, a path or a name on PATH: %w", c.Nix, envNix, err))
		}
	}
	ec := c.executorConfig()
	if ec.Project == "" {
		// As in the original, an empty project fails each Incus job's
		// runner prepare node: a recorded failed run, not a usage error
		// (serve checks it up front).
		ec.Project = "-"
	}
	if strings.TrimSpace(ec.Profile) == "" {
		// The same for a blank profile: each Incus job fails, recorded.
		ec.Profile = "-"
	}
	if c.GuestDiskSize != "" {
		probe := executor.DefaultConfig()
		probe.RootDiskSize = c.GuestDiskSize
		if err := probe.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--guest-disk-size %q (env JERICHOCI_GUEST_DISK_SIZE): %w", c.GuestDiskSize, err))
		}
		ec.RootDiskSize = "" // reported above, naming the flag
	}
	if err := ec.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := zap.ParseAtomicLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log level %q: expected debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// logger builds the one logger of the process: JSON lines on stderr, made
// safe for a terminal (zap escapes C0 controls itself, but neither DEL nor
// C1 characters; termsafe's \u00XX keeps each line valid JSON).
func (c execConfig) logger() *zap.Logger {
	lvl := zap.NewAtomicLevelAt(zap.InfoLevel)
	if l, err := zap.ParseAtomicLevel(c.LogLevel); err == nil {
		lvl = l
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	stderr := zapcore.Lock(zapcore.AddSync(termsafe.NewWriter(os.Stderr)))
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), stderr, lvl)
	return zap.New(core, zap.ErrorOutput(stderr), zap.AddCaller(), zap.AddStacktrace(zap.ErrorLevel))
}

// incusClient connects to incusd in the configured project, over HTTPS
// with --incus-url, else over the unix socket: the one place the command
// line opens the concrete backend. Close the client when done.
// A nil log logs nothing.
func (c execConfig) incusClient(env func(string) (string, bool), log *zap.Logger) (*incus.Client, error) {
	if c.Remote.remote() {
		return c.Remote.client(c.Project, log)
	}
	sock := c.Socket
	if sock == "" {
		var err error
		if sock, err = incus.SocketPath(env); err != nil {
			return nil, err
		}
	}
	return incus.NewUnix(sock, incus.WithProject(c.Project), incus.WithLogger(log))
}
