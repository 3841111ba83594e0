package main

import (
	"strings"
	"testing"
)

// The original's removed-variable guard and remote-defaults command
// (docs/CONTRACTS.md, "pikaci's command line").

func TestStagedLinuxRemoteDefaults(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		golden  string // stdout, byte for byte
		code    int
		wantErr string // in stderr
	}{
		{name: "shell lines", args: []string{"staged-linux-remote-defaults"}, golden: "staged-linux-remote-defaults.txt"},
		{name: "json", args: []string{"staged-linux-remote-defaults", "--json"}, golden: "staged-linux-remote-defaults.json"},
		// The built-in defaults, whatever the SSH variables say.
		{name: "the variables do not change them", args: []string{"staged-linux-remote-defaults", "--json"},
			env:    map[string]string{"PIKACI_PREPARED_OUTPUT_FULFILL_SSH_HOST": "elsewhere", "PIKACI_PREPARED_OUTPUT_FULFILL_SSH_BINARY": "/bin/false"},
			golden: "staged-linux-remote-defaults.json"},
		{name: "an argument", args: []string{"staged-linux-remote-defaults", "extra"}, code: exitUsage,
			wantErr: "jerichoci staged-linux-remote-defaults: expected no arguments, got 1"},
		{name: "an unknown flag", args: []string{"staged-linux-remote-defaults", "--yaml"}, code: exitUsage,
			wantErr: "flag provided but not defined: -yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCLIEnv(t, tc.env, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			if tc.golden != "" {
				if errs != "" {
					t.Errorf("stderr: %s", errs)
				}
				checkCLIGolden(t, tc.golden, out)
			}
			if !strings.Contains(errs, tc.wantErr) || (tc.wantErr != "" && out != "") {
				t.Errorf("stderr %q, want it to contain %q; stdout %q", errs, tc.wantErr, out)
			}
		})
	}
}

// TestStagedLinuxRemoteDefaultsFieldsForPikaScripts reads the JSON as pika's
// load_pikaci_staged_linux_remote_defaults does: every field a string.
func TestStagedLinuxRemoteDefaultsFieldsForPikaScripts(t *testing.T) {
	out, _, code := runCLI(t, "staged-linux-remote-defaults", "--json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, key := range []string{"ssh_binary", "ssh_nix_binary", "ssh_host", "remote_work_dir", "remote_launcher_binary", "remote_helper_binary", "store_uri"} {
		if !strings.Contains(out, `"`+key+`": "`) {
			t.Errorf("no string field %s in\n%s", key, out)
		}
	}
}

func TestRemovedLanesVariable(t *testing.T) {
	const msg = "jerichoci: PIKACI_REMOTE_LINUX_VM_INCUS_LANES has been removed; use PIKACI_REMOTE_LINUX_VM_BACKEND=incus|auto\n"
	root := fixtureState(t)
	tests := []struct {
		name    string
		value   *string // nil: unset
		args    []string
		code    int
		wantErr string // the whole of stderr, when refused
	}{
		{name: "set refuses every command", value: ptr("incus"), args: []string{"list", "--state-root", root}, code: exitUsage, wantErr: msg},
		{name: "a lane list", value: ptr("pre-merge-pika-rust,check-pika"), args: []string{"staged-linux-remote-defaults"}, code: exitUsage, wantErr: msg},
		{name: "before a run starts", value: ptr("1"), args: []string{"run", "demo-pass", "--state-root", t.TempDir()}, code: exitUsage, wantErr: msg},
		{name: "status", value: ptr(" x "), args: []string{"status", stagedRun, "--state-root", root}, code: exitUsage, wantErr: msg},
		{name: "blank is unset", value: ptr(" \t"), args: []string{"list", "--state-root", root}, code: exitOK},
		{name: "empty is unset", value: ptr(""), args: []string{"staged-linux-remote-defaults"}, code: exitOK},
		{name: "unset", args: []string{"list", "--state-root", root}, code: exitOK},
		{name: "help still answers", value: ptr("incus"), args: []string{"run", "--help"}, code: exitOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			if tc.value != nil {
				env["PIKACI_REMOTE_LINUX_VM_INCUS_LANES"] = *tc.value
			}
			out, errs, code := runCLIEnv(t, env, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			if tc.wantErr != "" && (errs != tc.wantErr || out != "") {
				t.Errorf("stderr %q, stdout %q; want only %q", errs, out, tc.wantErr)
			}
			if tc.wantErr == "" && strings.Contains(errs, "has been removed") {
				t.Errorf("refused: %s", errs)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestBlankProfile: PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE set but blank is
// kept as it is (no fallback to the default profile), so each Incus job
// fails as in the original (executor.RemoteLinuxVM refuses it); `run`
// accepts the configuration and records the failure, `serve` refuses to
// start.
func TestBlankProfile(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantProfile string
		serveErr    string // "" when serve accepts it
	}{
		{name: "unset is the default", env: map[string]string{}, wantProfile: "pika-agent-dev"},
		{name: "set", env: map[string]string{envProfile: "ci-fast"}, wantProfile: "ci-fast"},
		{name: "empty", env: map[string]string{envProfile: ""}, wantProfile: "",
			serveErr: "runtime spec field `incus.profile` must be non-empty (PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE)"},
		{name: "blanks", env: map[string]string{envProfile: "  "}, wantProfile: "  ",
			serveErr: "runtime spec field `incus.profile` must be non-empty (PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			cfg := defaultExecConfig()
			cfg.fromEnv(lookup)
			if cfg.Profile != tc.wantProfile || cfg.executorConfig().Profile != tc.wantProfile {
				t.Errorf("profile %q (executor %q), want %q", cfg.Profile, cfg.executorConfig().Profile, tc.wantProfile)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("run's Validate: %v; want the failure recorded in the run", err)
			}
			scfg := defaultServeConfig()
			scfg.fromEnv(lookup)
			err := scfg.Validate()
			switch {
			case tc.serveErr == "" && err != nil && strings.Contains(err.Error(), "profile"):
				t.Errorf("serve's Validate: %v", err)
			case tc.serveErr != "" && (err == nil || !strings.Contains(err.Error(), tc.serveErr)):
				t.Errorf("serve's Validate: %v; want %q", err, tc.serveErr)
			}
		})
	}
}
