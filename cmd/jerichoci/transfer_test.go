package main

import (
	"strings"
	"testing"

	"jerichoci/executor"
)

// TestIncusTransferSetting: auto (the default) takes mounts over the unix
// socket and the API over an Incus URL; an explicit mode wins; anything
// else is refused naming the flag.
func TestIncusTransferSetting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    executor.Transfer
		wantErr string
	}{
		{name: "default over the socket", want: executor.TransferMounts},
		{name: "default over a URL", env: map[string]string{envIncusURL: "https://10.0.0.1:8443"}, want: executor.TransferAPI},
		{name: "auto over a URL", args: []string{"--incus-url", "https://10.0.0.1", "--incus-transfer", "auto"}, want: executor.TransferAPI},
		{name: "mounts over a URL", args: []string{"--incus-url", "https://10.0.0.1", "--incus-transfer", "mounts"}, want: executor.TransferMounts},
		{name: "api over the socket", env: map[string]string{envIncusTransfer: "api"}, want: executor.TransferAPI},
		{name: "bad", args: []string{"--incus-transfer", "nfs"}, wantErr: `--incus-transfer "nfs" (env JERICHOCI_INCUS_TRANSFER): expected mounts, api or auto`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseExec(t, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if got := c.executorConfig().Transfer; got != tc.want {
				t.Errorf("transfer = %q, want %q", got, tc.want)
			}
		})
	}
}
