package main

import (
	"strings"
	"testing"
)

// --guest-state-mount and --max-job-output, and their environment twins,
// set executor.Config.StateDirMount (on by default) and MaxOutputBytes
// (1GiB by default).
func TestGuestStateMountAndOutputFlags(t *testing.T) {
	type want struct {
		mount  bool
		output int64
	}
	def := want{true, 1 << 30}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    want
		wantErr string
	}{
		{name: "defaults", want: def},
		{name: "mount off by environment", env: map[string]string{envGuestStateMount: "false"}, want: want{false, def.output}},
		{name: "mount: the flag wins", env: map[string]string{envGuestStateMount: "false"}, args: []string{"--guest-state-mount"}, want: def},
		{name: "mount off by flag", args: []string{"--guest-state-mount=false"}, want: want{false, def.output}},
		{name: "bad mount value", env: map[string]string{envGuestStateMount: "sometimes"}, wantErr: `JERICHOCI_GUEST_STATE_MOUNT="sometimes": expected true or false`},
		{name: "output by environment", env: map[string]string{envMaxJobOutput: "64MiB"}, want: want{true, 64 << 20}},
		{name: "output: the flag wins", env: map[string]string{envMaxJobOutput: "64MiB"}, args: []string{"--max-job-output", "2GiB"}, want: want{true, 2 << 30}},
		{name: "no output cap", args: []string{"--max-job-output", "0"}, want: want{true, 0}},
		{name: "bad output value", env: map[string]string{envMaxJobOutput: "lots"}, wantErr: `JERICHOCI_MAX_JOB_OUTPUT="lots"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseExec(t, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ec := c.executorConfig()
			if got := (want{ec.StateDirMount, ec.MaxOutputBytes}); got != tc.want {
				t.Errorf("state dir mount %v, max output %d; want %v, %d", got.mount, got.output, tc.want.mount, tc.want.output)
			}
		})
	}
}
