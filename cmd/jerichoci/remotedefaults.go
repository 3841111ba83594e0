package main

// pikaci's staged-linux-remote-defaults (docs/CONTRACTS.md, "pikaci's
// command line"): the SSH build host's defaults, which pika's shell
// helpers read with --json.

import (
	"context"
	"fmt"
)

const stagedRemoteDefaultsUsage = `staged-linux-remote-defaults [--json]

Prints the defaults of the staged Linux SSH build host as pikaci
staged-linux-remote-defaults does: default_ssh_binary=,
default_ssh_nix_binary=, default_ssh_host=, default_remote_work_dir=,
default_remote_launcher_binary=, default_remote_helper_binary= and
default_store_uri= (ssh://<host>), each value quoted for the shell. --json
prints them as one object without the default_ prefix (ssh_binary, …,
store_uri), the form pika's scripts read. The values are the built-in
defaults; the PIKACI_PREPARED_OUTPUT_FULFILL_SSH_* variables do not change
them. jerichoci itself has no SSH build host (README, "Differences").
`

// stagedRemoteDefaults is the original's StagedLinuxRemoteDefaultsJson, in
// its field order.
type stagedRemoteDefaults struct {
	SSHBinary            string `json:"ssh_binary"`
	SSHNixBinary         string `json:"ssh_nix_binary"`
	SSHHost              string `json:"ssh_host"`
	RemoteWorkDir        string `json:"remote_work_dir"`
	RemoteLauncherBinary string `json:"remote_launcher_binary"`
	RemoteHelperBinary   string `json:"remote_helper_binary"`
	StoreURI             string `json:"store_uri"`
}

// remoteDefaults are the original's built-in values.
func remoteDefaults() stagedRemoteDefaults {
	const host = "pika-build"
	return stagedRemoteDefaults{
		SSHBinary:            "/usr/bin/ssh",
		SSHNixBinary:         "nix",
		SSHHost:              host,
		RemoteWorkDir:        "/var/tmp/pikaci-prepared-output",
		RemoteLauncherBinary: "/run/current-system/sw/bin/pikaci-launch-fulfill-prepared-output",
		RemoteHelperBinary:   "/run/current-system/sw/bin/pikaci-fulfill-prepared-output",
		StoreURI:             "ssh://" + host,
	}
}

func runStagedLinuxRemoteDefaults(_ context.Context, c *cli, args []string) int {
	fs := c.flagSet("staged-linux-remote-defaults", stagedRemoteDefaultsUsage)
	asJSON := fs.Bool("json", false, "print the defaults as one JSON object")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	if len(pos) != 0 {
		return c.usageErr(fs, "expected no arguments, got %d", len(pos))
	}
	d := remoteDefaults()
	if *asJSON {
		return c.writeJSON(d)
	}
	for _, kv := range [][2]string{
		{"ssh_binary", d.SSHBinary}, {"ssh_nix_binary", d.SSHNixBinary}, {"ssh_host", d.SSHHost},
		{"remote_work_dir", d.RemoteWorkDir}, {"remote_launcher_binary", d.RemoteLauncherBinary},
		{"remote_helper_binary", d.RemoteHelperBinary}, {"store_uri", d.StoreURI},
	} {
		fmt.Fprintf(c.stdout, "default_%s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return exitOK
}
