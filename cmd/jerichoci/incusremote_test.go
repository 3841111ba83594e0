package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIncusRemoteConfig: the flags and their INCUS_* twins, and every
// problem Validate names at once.
func TestIncusRemoteConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(file, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	full := map[string]string{envIncusURL: "https://incus.example", envIncusClientCert: file, envIncusClientKey: file, envIncusServerCert: file}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantURL  string // the address NewTLS gets; "" for the socket
		wantErrs []string
	}{
		{name: "nothing: the unix socket"},
		{name: "from the environment, port 8443 added", env: full, wantURL: "https://incus.example:8443"},
		{name: "flags over the environment", env: full, args: []string{"--incus-url", "https://10.0.0.5:9443"}, wantURL: "https://10.0.0.5:9443"},
		{name: "IPv6 address", env: full, args: []string{"--incus-url", "https://[fd00::1]"}, wantURL: "https://[fd00::1]:8443"},
		{name: "address without the files", args: []string{"--incus-url", "https://h:8443"}, wantErrs: []string{
			"--incus-url https://h:8443: --incus-client-cert (env INCUS_CLIENT_CERT) is required",
			"--incus-client-key (env INCUS_CLIENT_KEY) is required",
			"--incus-server-cert (env INCUS_SERVER_CERT) is required"}},
		{name: "not https", env: full, args: []string{"--incus-url", "http://h:8443"}, wantErrs: []string{`--incus-url "http://h:8443" (env INCUS_URL): expected https://HOST[:PORT]`}},
		{name: "a path", env: full, args: []string{"--incus-url", "https://h:8443/1.0"}, wantErrs: []string{"expected https://HOST[:PORT]"}},
		{name: "a file missing", env: full, args: []string{"--incus-client-key", missing}, wantErrs: []string{`--incus-client-key "` + missing + `" (env INCUS_CLIENT_KEY): stat ` + missing + ": no such file or directory"}},
		{name: "files without an address", args: []string{"--incus-client-cert", file}, wantErrs: []string{`--incus-client-cert "` + file + `" (env INCUS_CLIENT_CERT): needs --incus-url (env INCUS_URL)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r incusRemote
			r.fromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			r.flags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := r.Validate()
			if len(tc.wantErrs) > 0 {
				if err == nil {
					t.Fatalf("Validate() = nil, want %q", tc.wantErrs)
				}
				for _, w := range tc.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Validate() = %v\nlacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if !r.remote() {
				if tc.wantURL != "" {
					t.Fatalf("no remote, want %s", tc.wantURL)
				}
				return
			}
			if got, err := r.baseURL(); err != nil || got != tc.wantURL {
				t.Errorf("baseURL() = %q, %v; want %q", got, err, tc.wantURL)
			}
		})
	}
}

// TestExecConfigValidatesRemote: serve's and run's configuration reports a
// bad remote with its other problems.
func TestExecConfigValidatesRemote(t *testing.T) {
	c := defaultExecConfig()
	c.fromEnv(func(k string) (string, bool) {
		if k == envIncusURL {
			return "https://h", true
		}
		return "", false
	})
	c.LogLevel = "loud"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--incus-client-cert (env INCUS_CLIENT_CERT) is required") || !strings.Contains(err.Error(), `log level "loud"`) {
		t.Fatalf("Validate() = %v", err)
	}
}
