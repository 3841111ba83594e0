package main

import (
	"strings"
	"testing"
	"time"

	"jerichoci/run/daemon"
)

func TestServeIncusHealthConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    daemon.HealthConfig
		wantErr []string
	}{
		{name: "defaults", want: daemon.DefaultHealthConfig()},
		{name: "the defaults are 5s, 5s, 2", want: daemon.HealthConfig{Every: 5 * time.Second, Timeout: 5 * time.Second, Failures: 2}},
		{name: "env, and flags over env",
			env:  map[string]string{"JERICHOCI_INCUS_CHECK_EVERY": "2s", "JERICHOCI_INCUS_CHECK_TIMEOUT": "1s", "JERICHOCI_INCUS_CHECK_FAILURES": "4"},
			args: []string{"--incus-check-every", "1s", "--incus-check-failures", "3"},
			want: daemon.HealthConfig{Every: time.Second, Timeout: time.Second, Failures: 3}},
		{name: "every problem named", args: []string{"--incus-check-every", "0s", "--incus-check-timeout", "-1s", "--incus-check-failures", "0"},
			wantErr: []string{"--incus-check-every 0s (env JERICHOCI_INCUS_CHECK_EVERY): expected a positive duration",
				"--incus-check-timeout -1s (env JERICHOCI_INCUS_CHECK_TIMEOUT): expected a positive duration",
				"--incus-check-failures 0 (env JERICHOCI_INCUS_CHECK_FAILURES): expected 1 or more"}},
		{name: "bad env values named", env: map[string]string{"JERICHOCI_INCUS_CHECK_EVERY": "often", "JERICHOCI_INCUS_CHECK_FAILURES": "two"},
			wantErr: []string{`JERICHOCI_INCUS_CHECK_EVERY="often": expected a duration`, `JERICHOCI_INCUS_CHECK_FAILURES="two": expected an integer`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseServe(t, tc.env, tc.args...)
			if len(tc.wantErr) == 0 {
				if err != nil || c.incusHealth != tc.want {
					t.Fatalf("incus health %+v (Validate %v), want %+v", c.incusHealth, err, tc.want)
				}
				return
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nmissing %q", err, w)
				}
			}
		})
	}
}
