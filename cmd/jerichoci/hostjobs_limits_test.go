package main

import (
	"strings"
	"testing"

	"jerichoci/executor/hostlocal"
)

// TestHostJobsMaxProcessesConfig: --host-jobs-max-processes defaults to
// hostlocal.DefaultMaxProcesses, JERICHOCI_HOST_JOBS_MAX_PROCESSES sets
// it, the flag wins, 0 turns it off, and a negative or non-number value
// is refused naming the flag or the variable.
func TestHostJobsMaxProcessesConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    int
		wantErr string
	}{
		{name: "default", want: hostlocal.DefaultMaxProcesses},
		{name: "environment", env: map[string]string{"JERICHOCI_HOST_JOBS_MAX_PROCESSES": "512"}, want: 512},
		{name: "flag over environment", env: map[string]string{"JERICHOCI_HOST_JOBS_MAX_PROCESSES": "512"},
			args: []string{"--host-jobs-max-processes", "128"}, want: 128},
		{name: "off", args: []string{"--host-jobs-max-processes", "0"}, want: 0},
		{name: "negative", args: []string{"--host-jobs-max-processes", "-1"},
			wantErr: "--host-jobs-max-processes -1 (env JERICHOCI_HOST_JOBS_MAX_PROCESSES): expected a number >= 0 (0: no limit)"},
		{name: "not a number", env: map[string]string{"JERICHOCI_HOST_JOBS_MAX_PROCESSES": "many"},
			wantErr: `JERICHOCI_HOST_JOBS_MAX_PROCESSES="many": expected an integer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseServe(t, tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg.hostJobsMaxProcesses != tc.want {
				t.Fatalf("max processes %d (Validate %v), want %d", cfg.hostJobsMaxProcesses, err, tc.want)
			}
		})
	}
}
