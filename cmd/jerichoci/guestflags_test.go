package main

import (
	"strings"
	"testing"
)

// --guest-state-mount and its environment twin set
// executor.Config.StateDirMount, on by default.
func TestGuestStateMountFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    bool
		wantErr string
	}{
		{name: "default on", want: true},
		{name: "environment off", env: map[string]string{envGuestStateMount: "false"}, want: false},
		{name: "flag wins", env: map[string]string{envGuestStateMount: "false"}, args: []string{"--guest-state-mount"}, want: true},
		{name: "flag off", args: []string{"--guest-state-mount=false"}, want: false},
		{name: "bad environment value", env: map[string]string{envGuestStateMount: "sometimes"}, wantErr: `JERICHOCI_GUEST_STATE_MOUNT="sometimes": expected true or false`},
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
			if got := c.executorConfig().StateDirMount; got != tc.want {
				t.Errorf("StateDirMount %v, want %v", got, tc.want)
			}
		})
	}
}

// --max-job-output and its environment twin set
// executor.Config.MaxOutputBytes, 1GiB by default.
func TestMaxJobOutputFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    int64
		wantErr string
	}{
		{name: "default", want: 1 << 30},
		{name: "environment", env: map[string]string{envMaxJobOutput: "64MiB"}, want: 64 << 20},
		{name: "flag wins", env: map[string]string{envMaxJobOutput: "64MiB"}, args: []string{"--max-job-output", "2GiB"}, want: 2 << 30},
		{name: "no cap", args: []string{"--max-job-output", "0"}, want: 0},
		{name: "bad environment value", env: map[string]string{envMaxJobOutput: "lots"}, wantErr: `JERICHOCI_MAX_JOB_OUTPUT="lots"`},
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
			if got := c.executorConfig().MaxOutputBytes; got != tc.want {
				t.Errorf("MaxOutputBytes %d, want %d", got, tc.want)
			}
		})
	}
}
