package main

import (
	"strings"
	"testing"
)

// TestNixProgramMustExist: --nix and JERICHOCI_NIX name a program that
// must be there; a wrong one is a usage error naming the flag and its
// environment twin, before anything runs.
func TestNixProgramMustExist(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"--nix", "/nonexistent/nix"}, nil},
		{"env", nil, map[string]string{envNix: "/nonexistent/nix"}},
		{"name not on PATH", []string{"--nix", "no-such-nix-program"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb lockedBuf
			c := &cli{stdout: &out, stderr: &errb, env: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			argv := append([]string{"run", "--state-root", t.TempDir()}, tc.args...)
			code := c.main(t.Context(), append(argv, "pika-actionlint"))
			if code != exitUsage || !strings.Contains(errb.String(), `--nix "`) || !strings.Contains(errb.String(), "(env JERICHOCI_NIX): expected the nix program") {
				t.Errorf("exit %d, stderr:\n%s", code, errb.String())
			}
		})
	}
}
