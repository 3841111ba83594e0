package model

import (
	"encoding/json"
	"fmt"
	"strings"
)

// CommandKind is the shape of a job's command (docs/CONTRACTS.md, "Commands").
type CommandKind string

// Command kinds.
const (
	CmdShell                 CommandKind = "shell"
	CmdShellAsRoot           CommandKind = "shell_as_root"
	CmdHostShell             CommandKind = "host_shell"
	CmdCargoExactTest        CommandKind = "cargo_exact_test"
	CmdCargoPackageUnitTests CommandKind = "cargo_package_unit_tests"
	CmdCargoPackageTests     CommandKind = "cargo_package_tests"
	CmdCargoFilteredTests    CommandKind = "cargo_filtered_tests"
	CmdStaged                CommandKind = "staged"
)

// JobCommand is a job's command before compilation.
type JobCommand struct {
	Kind    CommandKind `json:"kind"`
	Command string      `json:"command,omitempty"` // shell kinds
	Package string      `json:"package,omitempty"` // cargo kinds
	Test    string      `json:"test,omitempty"`    // cargo_exact_test
	Filter  string      `json:"filter,omitempty"`  // cargo_filtered_tests
	Wrapper string      `json:"wrapper,omitempty"` // staged: absolute wrapper path
}

// Shell is a shell command run as the unprivileged user.
func Shell(c string) JobCommand { return JobCommand{Kind: CmdShell, Command: c} }

// ShellAsRoot is a shell command run as root.
func ShellAsRoot(c string) JobCommand { return JobCommand{Kind: CmdShellAsRoot, Command: c} }

// HostShell is a shell command of a host-local job.
func HostShell(c string) JobCommand { return JobCommand{Kind: CmdHostShell, Command: c} }

// Staged is a staged job run through its wrapper.
func Staged(wrapper string) JobCommand { return JobCommand{Kind: CmdStaged, Wrapper: wrapper} }

// ShellQuote wraps x in single quotes, replacing each inner ' with '"'"'. It
// always quotes, as the original does.
func ShellQuote(x string) string {
	return "'" + strings.ReplaceAll(x, "'", `'"'"'`) + "'"
}

// Compile turns the command into the guest request's command string and its
// run_as_root flag.
func (c JobCommand) Compile() (command string, runAsRoot bool, err error) {
	need := func(field, v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("command field `%s` must be non-empty for kind %q", field, c.Kind)
		}
		return nil
	}
	switch c.Kind {
	case CmdShell, CmdHostShell:
		if err := need("command", c.Command); err != nil {
			return "", false, err
		}
		return "bash --noprofile --norc -lc " + ShellQuote(c.Command), false, nil
	case CmdShellAsRoot:
		if err := need("command", c.Command); err != nil {
			return "", false, err
		}
		return "bash --noprofile --norc -lc " + ShellQuote(c.Command), true, nil
	case CmdCargoExactTest:
		if err := errorsJoin(need("package", c.Package), need("test", c.Test)); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("cargo test -p %s %s -- --exact --nocapture", ShellQuote(c.Package), ShellQuote(c.Test)), false, nil
	case CmdCargoPackageUnitTests:
		if err := need("package", c.Package); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("cargo test -p %s --lib -- --nocapture", ShellQuote(c.Package)), false, nil
	case CmdCargoPackageTests:
		if err := need("package", c.Package); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("cargo test -p %s -- --nocapture", ShellQuote(c.Package)), false, nil
	case CmdCargoFilteredTests:
		if err := errorsJoin(need("package", c.Package), need("filter", c.Filter)); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("cargo test -p %s -- %s --nocapture", ShellQuote(c.Package), ShellQuote(c.Filter)), false, nil
	case CmdStaged:
		if err := need("wrapper", c.Wrapper); err != nil {
			return "", false, err
		}
		return c.Wrapper, false, nil
	}
	return "", false, fmt.Errorf("command field `kind`: unknown kind %q, expected one of %s", c.Kind, strings.Join(commandKindNames(), ", "))
}

func commandKindNames() []string {
	return []string{string(CmdShell), string(CmdShellAsRoot), string(CmdHostShell), string(CmdCargoExactTest),
		string(CmdCargoPackageUnitTests), string(CmdCargoPackageTests), string(CmdCargoFilteredTests), string(CmdStaged)}
}

// GuestRequest is the request written to /run/pika-cloud/guest-request.json
// (schema 2). The guest rejects unknown fields: these four, and
// secret_env_file, which only jerichoci writes (a job with secret_env).
type GuestRequest struct {
	SchemaVersion int    `json:"schema_version"`
	Command       string `json:"command"`
	TimeoutSecs   uint64 `json:"timeout_secs"`
	RunAsRoot     bool   `json:"run_as_root"`
	// SecretEnvFile is a guest path holding a JSON object of environment
	// variables for the command, readable by root only; the runner reads
	// and deletes it before the command starts. Secrets never go into the
	// request itself, which may sit on the host.
	SecretEnvFile string `json:"secret_env_file,omitempty"`
}

// NewGuestRequest compiles cmd into a schema-2 guest request.
func NewGuestRequest(cmd JobCommand, timeoutSecs uint64) (GuestRequest, error) {
	c, root, err := cmd.Compile()
	if err != nil {
		return GuestRequest{}, err
	}
	if timeoutSecs == 0 {
		return GuestRequest{}, fmt.Errorf("guest request field `timeout_secs` must be > 0, got 0")
	}
	return GuestRequest{SchemaVersion: 2, Command: c, TimeoutSecs: timeoutSecs, RunAsRoot: root}, nil
}

// Encode writes the request as pretty JSON, as the original does.
func (r GuestRequest) Encode() ([]byte, error) {
	return json.MarshalIndent(r, "", "  ")
}

// The guest's layout as the runner sets it up (docs/CONTRACTS.md, "Guest
// runner environment").
const (
	GuestSystemProfile = "/run/current-system/sw" // the system profile of the original's image
	GuestSystemBin     = GuestSystemProfile + "/bin"
	GuestStateDir      = "/run/pika-cloud"
	GuestWorkspaceDir  = "/workspace/snapshot"
	GuestCargoHome     = "/cargo-home"
	GuestCargoTarget   = "/cargo-target"
	GuestXDGCacheHome  = GuestCargoHome + "/xdg-cache"
	GuestXDGStateHome  = GuestStateDir + "/xdg-state"
	GuestUserHome      = "/home/pikaci"
	GuestRootHome      = "/root"
	GuestCABundle      = "/etc/ssl/certs/ca-bundle.crt"
	GuestUID           = 1000 // the job user, pikaci
	GuestGID           = 100  // its group, users
)

// GuestEnv is what the guest runner sets, in order, over the environment
// it was started with; a job's secret_env may not name one of these.
var GuestEnv = []string{
	"PATH=", // GuestSystemBin, ":" and the PATH the runner was started with
	"CARGO_TERM_COLOR=never",
	"CARGO_HOME=" + GuestCargoHome,
	"CARGO_TARGET_DIR=" + GuestCargoTarget,
	"CARGO_INCREMENTAL=0",
	"XDG_CACHE_HOME=" + GuestXDGCacheHome,
	"XDG_STATE_HOME=" + GuestXDGStateHome,
	"PGSYSCONFDIR=" + GuestSystemProfile,
	"PGSHAREDIR=" + GuestSystemProfile + "/share/postgresql",
	"SSL_CERT_FILE=" + GuestCABundle,
	"NIX_SSL_CERT_FILE=" + GuestCABundle,
	"HOME=", // the job user's home (GuestUserHome, or GuestRootHome for a root job)
}

// SecretEnvProblem says what is wrong with name as a secret_env entry, ""
// when nothing is: a shell variable name ([A-Za-z_][A-Za-z0-9_]*, at most
// 128 bytes) that the runner does not set itself.
func SecretEnvProblem(name string) string {
	if name == "" || len(name) > 128 {
		return fmt.Sprintf("expected an environment variable name of 1 to 128 characters, got %q", name)
	}
	for i, c := range name {
		ok := c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return fmt.Sprintf("expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got %q", name)
		}
	}
	for _, kv := range GuestEnv {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return fmt.Sprintf("%q is set by the guest runner for every job; a secret cannot replace it", name)
		}
	}
	return ""
}
