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
