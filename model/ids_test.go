package model

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestFormatTimestamp(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)
	tests := []struct {
		t    time.Time
		want string
	}{
		{base, "2026-11-25T10:15:00+00:00"},
		{base.Add(412 * time.Millisecond), "2026-11-25T10:15:00.412+00:00"},
		{base.Add(412873 * time.Microsecond), "2026-11-25T10:15:00.412873+00:00"},
		{base.Add(412873915), "2026-11-25T10:15:00.412873915+00:00"},
		{base.Add(1), "2026-11-25T10:15:00.000000001+00:00"},
		{base.Add(1000), "2026-11-25T10:15:00.000001+00:00"},
		{base.In(time.FixedZone("x", 3600)), "2026-11-25T10:15:00+00:00"},
	}
	for _, tc := range tests {
		if got := FormatTimestamp(tc.t); got != tc.want {
			t.Errorf("FormatTimestamp(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}

func TestParseTimestampAcceptsOffsets(t *testing.T) {
	want := time.Date(2026, 3, 19, 1, 9, 40, 0, time.UTC)
	for _, in := range []string{"2026-03-19T01:09:40+00:00", "2026-03-19T01:09:40Z", "2026-03-19T02:09:40+01:00"} {
		got, err := ParseTimestamp(in)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTimestamp(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseTimestamp("yesterday"); err == nil {
		t.Error("ParseTimestamp(yesterday) succeeded")
	}
}

func TestRunID(t *testing.T) {
	id := uuid.MustParse("deadbeef-0000-4000-8000-000000000000")
	got := NewRunID(time.Date(2026, 3, 19, 1, 2, 3, 999, time.FixedZone("x", -7200)), id)
	if got != "20260319T030203Z-deadbeef" {
		t.Errorf("NewRunID = %q", got)
	}
	if !ValidRunID(got) {
		t.Errorf("ValidRunID(%q) = false", got)
	}
	for _, bad := range []string{"", "20260319T030203Z", "20260319T030203Z-DEADBEEF", "../etc", "20260319T030203Z-deadbeef/x"} {
		if ValidRunID(bad) {
			t.Errorf("ValidRunID(%q) = true", bad)
		}
	}
}

func TestInstanceName(t *testing.T) {
	// Verified against the original (docs/CONTRACTS.md, "Instance and device names").
	if got := InstanceName("run-1", "job"); got != "pikaci-af8dc8858830" {
		t.Errorf("InstanceName(run-1, job) = %q, want pikaci-af8dc8858830", got)
	}
	if InstanceName("r", "a") == InstanceName("r", "b") {
		t.Error("InstanceName collides for different jobs")
	}
}

func TestCompileCommand(t *testing.T) {
	tests := []struct {
		cmd      JobCommand
		want     string
		wantRoot bool
		wantErr  string
	}{
		{Shell("actionlint"), "bash --noprofile --norc -lc 'actionlint'", false, ""},
		{Shell("echo it's"), `bash --noprofile --norc -lc 'echo it'"'"'s'`, false, ""},
		{ShellAsRoot("id -u"), "bash --noprofile --norc -lc 'id -u'", true, ""},
		{HostShell("just check"), "bash --noprofile --norc -lc 'just check'", false, ""},
		{JobCommand{Kind: CmdCargoExactTest, Package: "pika-core", Test: "tests::a"}, "cargo test -p 'pika-core' 'tests::a' -- --exact --nocapture", false, ""},
		{JobCommand{Kind: CmdCargoPackageUnitTests, Package: "p"}, "cargo test -p 'p' --lib -- --nocapture", false, ""},
		{JobCommand{Kind: CmdCargoPackageTests, Package: "p"}, "cargo test -p 'p' -- --nocapture", false, ""},
		{JobCommand{Kind: CmdCargoFilteredTests, Package: "p", Filter: "e2e_"}, "cargo test -p 'p' -- 'e2e_' --nocapture", false, ""},
		{Staged("/staged/linux-rust/workspace-build/bin/run-pika-actionlint"), "/staged/linux-rust/workspace-build/bin/run-pika-actionlint", false, ""},
		{JobCommand{Kind: CmdStaged, Command: "ignored", Wrapper: "/w"}, "/w", false, ""},
		{Shell(" "), "", false, "command field `command` must be non-empty for kind \"shell\""},
		{JobCommand{Kind: "nix"}, "", false, "command field `kind`: unknown kind \"nix\""},
	}
	for _, tc := range tests {
		got, root, err := tc.cmd.Compile()
		if tc.wantErr != "" {
			if err == nil || len(err.Error()) < len(tc.wantErr) || err.Error()[:len(tc.wantErr)] != tc.wantErr {
				t.Errorf("Compile(%+v) error = %v, want prefix %q", tc.cmd, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || root != tc.wantRoot {
			t.Errorf("Compile(%+v) = %q, %v, %v; want %q, %v", tc.cmd, got, root, err, tc.want, tc.wantRoot)
		}
	}
}

func TestGuestRequestEncoding(t *testing.T) {
	req, err := NewGuestRequest(ShellAsRoot("id -u"), 45)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeCompact(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schema_version":2,"command":"bash --noprofile --norc -lc 'id -u'","timeout_secs":45,"run_as_root":true}` + "\n"
	if string(b) != want {
		t.Errorf("guest request = %s, want %s", b, want)
	}
	if _, err := NewGuestRequest(Shell("true"), 0); err == nil {
		t.Error("NewGuestRequest with timeout 0 succeeded")
	}
}

func TestSnapshotDeviceName(t *testing.T) {
	// Verified against the original (docs/CONTRACTS.md, "Instance and device names").
	if got := SnapshotDeviceName("/var/tmp/pikaci/runs/run/snapshot", "/workspace/snapshot"); got != "pk-snapsh-b34434da" {
		t.Errorf("SnapshotDeviceName = %q, want pk-snapsh-b34434da", got)
	}
	if got := sanitize("--Ab_C/9--"); got != "ab-c-9" {
		t.Errorf("sanitize = %q", got)
	}
}

func TestPayloadDeviceName(t *testing.T) {
	for _, tc := range []struct{ kind, mount, want string }{
		{"workspace-build", "workspace_build_root", "pk-workspac-51fa7376"}, // the original's, verified
		{"a", "b", "pk-a-b"},
		{"Kind", "x.y", "pk-kind-x-y"},
	} {
		if got := PayloadDeviceName(tc.kind, tc.mount); got != tc.want {
			t.Errorf("PayloadDeviceName(%q, %q) = %q, want %q", tc.kind, tc.mount, got, tc.want)
		}
	}
}

func TestValidatePayloadMount(t *testing.T) {
	for _, tc := range []struct {
		m    PayloadMount
		want string
	}{
		{PayloadMount{Name: "root", RelativePath: ".", GuestPath: "/staged/linux-rust/workspace-build"}, ""},
		{PayloadMount{Name: "lib", RelativePath: "lib", GuestPath: "/opt/lib"}, ""},
		{PayloadMount{Name: " ", RelativePath: ".", GuestPath: "/x"}, "invalid payload mount for /nix/store/p: empty mount name"},
		{PayloadMount{Name: "up", RelativePath: "../etc", GuestPath: "/x"}, "invalid payload mount `up` for /nix/store/p: relative_path must stay within the payload root"},
		{PayloadMount{Name: "abs", RelativePath: "/etc", GuestPath: "/x"}, "invalid payload mount `abs` for /nix/store/p: relative_path must stay within the payload root"},
		{PayloadMount{Name: "rel", RelativePath: ".", GuestPath: "x"}, "invalid payload mount `rel` for /nix/store/p: guest_path must be an absolute normalized path"},
		{PayloadMount{Name: "dd", RelativePath: ".", GuestPath: "/a/../etc"}, "invalid payload mount `dd` for /nix/store/p: guest_path must be an absolute normalized path"},
	} {
		err := ValidatePayloadMount("/nix/store/p", tc.m)
		if got := errString(err); got != tc.want {
			t.Errorf("ValidatePayloadMount(%+v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
