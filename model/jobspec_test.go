package model

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseJobSpecValid(t *testing.T) {
	tests := []struct {
		file     string
		name     string
		source   SourceKind
		role     IncusGuestRole
		instance InstanceType
	}{
		{"lane-object-store.json", "check-pika-rust", SourceObjectStore, RolePikaciRunner, InstanceContainer},
		{"target-host-path-minimal.json", "demo-pass", SourceHostPath, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(fixtures, "jobspecs", "valid", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseJobSpec(raw)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name() != tc.name || s.Source.Kind != tc.source || s.SchemaVersion != 1 {
				t.Errorf("ParseJobSpec = %+v", s)
			}
			var role IncusGuestRole
			var it InstanceType
			if s.Runtime != nil && s.Runtime.Incus != nil {
				role, it = s.Runtime.Incus.GuestRole, s.Runtime.Incus.InstanceType
			}
			if role != tc.role || it != tc.instance {
				t.Errorf("runtime = %q %q, want %q %q", role, it, tc.role, tc.instance)
			}
			// What we parse, we can write and parse again to the same value.
			b, err := EncodeCompact(s)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseJobSpec(b)
			if err != nil {
				t.Fatalf("re-parse %s: %v", b, err)
			}
			b2, _ := EncodeCompact(again)
			if string(b) != string(b2) {
				t.Errorf("round trip differs:\n%s\n%s", b, b2)
			}
		})
	}
}

// TestParseJobSpecInvalid reads each invalid spec with its expected error
// (NAME.json, NAME.err) from testdata/fixtures/jobspecs/invalid.
func TestParseJobSpecInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtures, "jobspecs", "invalid", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid job spec fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseJobSpec(raw)
			if err == nil {
				t.Fatal("ParseJobSpec succeeded, want an error")
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			if got := err.Error(); got != strings.TrimSpace(string(want)) {
				t.Errorf("error:\n got: %s\nwant: %s", got, strings.TrimSpace(string(want)))
			}
		})
	}
}
