package model

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestParseJobSpecGroup: a spec's `group` is read, written back and read
// again to the same value; a spec without one has none.
func TestParseJobSpecGroup(t *testing.T) {
	tests := []struct {
		file string
		want *JobGroup
	}{
		{"lane-group.json", &JobGroup{ID: "push-4eef499-1", Lanes: []string{"check-pika-rust", "check-pika-followup", "check-notifications"}}},
		{"lane-group-job-ids.json", &JobGroup{ID: "push-4eef499-1", Lanes: []string{"check-pika-rust", "check-pika-followup", "check-notifications"},
			JobIDs: []string{"5d0c1f9e-8a27-4c3b-9e51-2f6a7b8c9d01", "6e1d2a0f-9b38-4d4c-8f62-3a7b8c9d0e12", "7f2e3b1a-0c49-4e5d-9a73-4b8c9d0e1f23"}}},
		{"lane-object-store.json", nil},
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
			if !reflect.DeepEqual(s.Group, tc.want) {
				t.Fatalf("group = %+v, want %+v", s.Group, tc.want)
			}
			b, err := EncodeCompact(s)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseJobSpec(b)
			if err != nil || !reflect.DeepEqual(again.Group, tc.want) {
				t.Fatalf("re-parse %s: group %+v, %v", b, again.Group, err)
			}
		})
	}
}
