package model

import (
	"encoding/json"
	"testing"
)

func envOf(m map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseIncusGuestRole(t *testing.T) {
	tests := []struct {
		in      string
		want    IncusGuestRole
		wantErr string
	}{
		{"pikaci-runner", RolePikaciRunner, ""},
		{"managed-openclaw", RoleManagedOpenclaw, ""},
		{"  pikaci-runner\n", RolePikaciRunner, ""},
		{"\tmanaged-openclaw ", RoleManagedOpenclaw, ""},
		{"PIKACI-RUNNER", "", "expected `managed-openclaw` or `pikaci-runner`, got \"PIKACI-RUNNER\""},
		{" not-a-role ", "", "expected `managed-openclaw` or `pikaci-runner`, got \"not-a-role\""},
		{"", "", "expected `managed-openclaw` or `pikaci-runner`, got \"\""},
		{"pikaci_runner", "", "expected `managed-openclaw` or `pikaci-runner`, got \"pikaci_runner\""},
	}
	for _, tc := range tests {
		got, err := ParseIncusGuestRole(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseIncusGuestRole(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseIncusGuestRole(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestIncusGuestRoleJSON(t *testing.T) {
	for _, r := range GuestRoles() {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != `"`+string(r)+`"` {
			t.Errorf("Marshal(%s) = %s", r, b)
		}
		var back IncusGuestRole
		if err := json.Unmarshal(b, &back); err != nil || back != r {
			t.Errorf("Unmarshal(%s) = %q, %v", b, back, err)
		}
	}
	// JSON is exact: not trimmed, case-sensitive.
	for _, in := range []string{`" pikaci-runner"`, `"PIKACI-RUNNER"`, `"pikaci-runner "`, `"runner"`, `1`, `true`} {
		var r IncusGuestRole
		if err := json.Unmarshal([]byte(in), &r); err == nil {
			t.Errorf("Unmarshal(%s) = %q, want an error", in, r)
		}
	}
	// null means absent.
	var p *IncusGuestRole
	if err := json.Unmarshal([]byte(`null`), &p); err != nil || p != nil {
		t.Errorf("Unmarshal(null) = %v, %v; want nil, nil", p, err)
	}
	if _, err := json.Marshal(IncusGuestRole("bogus")); err == nil {
		t.Error("Marshal(bogus) succeeded, want an error")
	}
}

func TestRoleAttributes(t *testing.T) {
	tests := []struct {
		role                       IncusGuestRole
		alias, attr, legacy, image string
		disk                       int
	}{
		{RoleManagedOpenclaw, "pika-agent/dev", "managed-openclaw-incus-image", "pika-agent-incus-dev-image", "pika-agent-incus-dev", 8192},
		{RolePikaciRunner, "pikaci/dev", "pikaci-runner-incus-image", "pikaci-incus-dev-image", "pikaci-incus-dev", 12288},
	}
	for _, tc := range tests {
		if got := tc.role.DefaultImageAlias(); got != tc.alias {
			t.Errorf("%s.DefaultImageAlias() = %q, want %q", tc.role, got, tc.alias)
		}
		if got := tc.role.ImagePackageAttr(); got != tc.attr {
			t.Errorf("%s.ImagePackageAttr() = %q, want %q", tc.role, got, tc.attr)
		}
		if got := tc.role.LegacyImagePackageAttr(); got != tc.legacy {
			t.Errorf("%s.LegacyImagePackageAttr() = %q, want %q", tc.role, got, tc.legacy)
		}
		if got := tc.role.LegacyImageName(); got != tc.image {
			t.Errorf("%s.LegacyImageName() = %q, want %q", tc.role, got, tc.image)
		}
		if got := tc.role.DiskSizeMiB(); got != tc.disk {
			t.Errorf("%s.DiskSizeMiB() = %d, want %d", tc.role, got, tc.disk)
		}
	}
}

func TestUsesDefaultImageAlias(t *testing.T) {
	tests := []struct {
		role  IncusGuestRole
		alias string
		want  bool
	}{
		{RolePikaciRunner, "pikaci/dev", true},
		{RolePikaciRunner, " pikaci/dev ", true},
		{RolePikaciRunner, "\tpikaci/dev\n", true},
		{RolePikaciRunner, "custom/pikaci", false},
		{RolePikaciRunner, "pika-agent/dev", false},
		{RolePikaciRunner, "PIKACI/DEV", false},
		{RoleManagedOpenclaw, "pika-agent/dev", true},
		{RoleManagedOpenclaw, "pikaci/dev", false},
		{RoleManagedOpenclaw, "", false},
	}
	for _, tc := range tests {
		if got := tc.role.UsesDefaultImageAlias(tc.alias); got != tc.want {
			t.Errorf("%s.UsesDefaultImageAlias(%q) = %v, want %v", tc.role, tc.alias, got, tc.want)
		}
	}
}

func TestGuestRoleFromEnvExactError(t *testing.T) {
	const want = "PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE must be one of `managed-openclaw` or `pikaci-runner`, got \"not-a-role\""
	for _, v := range []string{"not-a-role", "  not-a-role\t"} {
		_, _, err := GuestRoleFromEnv(envOf(map[string]string{EnvGuestRole: v}))
		if err == nil || err.Error() != want {
			t.Errorf("GuestRoleFromEnv(%q) error = %v, want %q", v, err, want)
		}
	}
	for _, v := range []string{"", "   "} {
		_, ok, err := GuestRoleFromEnv(envOf(map[string]string{EnvGuestRole: v}))
		if ok || err != nil {
			t.Errorf("GuestRoleFromEnv(%q) = ok %v, err %v; want unset", v, ok, err)
		}
	}
}

func TestResolveIncusImage(t *testing.T) {
	runner := IncusRuntimeFor(RolePikaciRunner)
	openclaw := IncusRuntimeFor(RoleManagedOpenclaw)
	tests := []struct {
		name         string
		env          map[string]string
		rt           RuntimeConfig
		wantRole     IncusGuestRole
		wantAlias    string
		wantRecorded IncusGuestRole // "" = omitted
		wantErr      string
	}{
		{name: "job role, default alias", rt: runner, wantRole: RolePikaciRunner, wantAlias: "pikaci/dev", wantRecorded: RolePikaciRunner},
		{name: "custom alias records nothing", env: map[string]string{EnvImageAlias: "custom/pikaci"}, rt: runner,
			wantRole: RolePikaciRunner, wantAlias: "custom/pikaci"},
		{name: "env role wins", env: map[string]string{EnvGuestRole: "managed-openclaw"}, rt: runner,
			wantRole: RoleManagedOpenclaw, wantAlias: "pika-agent/dev", wantRecorded: RoleManagedOpenclaw},
		{name: "env role trimmed", env: map[string]string{EnvGuestRole: " managed-openclaw\n"}, rt: runner,
			wantRole: RoleManagedOpenclaw, wantAlias: "pika-agent/dev", wantRecorded: RoleManagedOpenclaw},
		{name: "env role with other role's alias", env: map[string]string{EnvGuestRole: "managed-openclaw", EnvImageAlias: "pikaci/dev"}, rt: runner,
			wantRole: RoleManagedOpenclaw, wantAlias: "pikaci/dev"},
		{name: "padded default alias still recorded, sent verbatim", env: map[string]string{EnvImageAlias: " pikaci/dev "}, rt: runner,
			wantRole: RolePikaciRunner, wantAlias: " pikaci/dev ", wantRecorded: RolePikaciRunner},
		{name: "empty env role means job role", env: map[string]string{EnvGuestRole: "  "}, rt: openclaw,
			wantRole: RoleManagedOpenclaw, wantAlias: "pika-agent/dev", wantRecorded: RoleManagedOpenclaw},
		{name: "invalid env role", env: map[string]string{EnvGuestRole: "not-a-role"}, rt: runner,
			wantErr: "PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE must be one of `managed-openclaw` or `pikaci-runner`, got \"not-a-role\""},
		{name: "role for host job", env: map[string]string{EnvGuestRole: "pikaci-runner"}, rt: HostProcessRuntime(),
			wantErr: "remote Incus guest role requested for non-Incus job `apple-host-sanity`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveIncusImage(envOf(tc.env), "apple-host-sanity", tc.rt)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Role != tc.wantRole || got.Alias != tc.wantAlias {
				t.Errorf("got role %q alias %q, want %q %q", got.Role, got.Alias, tc.wantRole, tc.wantAlias)
			}
			var rec IncusGuestRole
			if got.Recorded != nil {
				rec = *got.Recorded
			}
			if rec != tc.wantRecorded {
				t.Errorf("recorded = %q, want %q", rec, tc.wantRecorded)
			}
		})
	}
}
