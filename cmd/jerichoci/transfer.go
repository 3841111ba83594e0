package main

import (
	"flag"
	"fmt"

	"jerichoci/executor"
)

// envIncusTransfer is the twin of --incus-transfer.
const envIncusTransfer = "JERICHOCI_INCUS_TRANSFER"

// transferAuto picks the transfer by where incusd is: mounts over the
// local unix socket, the API over an Incus URL.
const transferAuto = "auto"

// transferFlag registers --incus-transfer.
func (c *execConfig) transferFlag(fs *flag.FlagSet) {
	fs.StringVar(&c.Transfer, "incus-transfer", c.Transfer, "how a job's snapshot, guest request and staged outputs reach its guest: `MODE` mounts (host-path disk devices: incusd on this host), api (one archive through the Incus API: incusd anywhere) or auto (mounts over the unix socket, api over an Incus URL) (env "+envIncusTransfer+"; docs/INCUS.md)")
}

// resolveTransfer is the executor's transfer; remote says incusd is reached over
// a URL rather than the local unix socket.
func resolveTransfer(mode string, remote bool) executor.Transfer {
	switch mode {
	case string(executor.TransferMounts):
		return executor.TransferMounts
	case string(executor.TransferAPI):
		return executor.TransferAPI
	}
	if remote {
		return executor.TransferAPI
	}
	return executor.TransferMounts
}

// transferErr reports a --incus-transfer that is none of the modes.
func (c execConfig) transferErr() error {
	switch c.Transfer {
	case "", transferAuto, string(executor.TransferMounts), string(executor.TransferAPI):
		return nil
	}
	return fmt.Errorf("--incus-transfer %q (env %s): expected mounts, api or auto", c.Transfer, envIncusTransfer)
}
