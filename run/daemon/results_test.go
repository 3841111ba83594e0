package daemon

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

func bigRecord(files, msgBytes int) model.RunRecord {
	now := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	rec := model.RunRecord{RunID: "20261130T010000Z-0a0b0c0d", Status: model.StatusPassed, SourceRoot: "/src",
		SnapshotDir: "/state/runs/x/snapshot", CreatedAt: model.At(now), FinishedAt: model.TimestampPtr(now)}
	for i := 0; i < files; i++ {
		rec.ChangedFiles = append(rec.ChangedFiles, fmt.Sprintf("src/deep/path/file-%06d.rs", i))
	}
	msg := strings.Repeat("m", msgBytes)
	rec.Jobs = []model.JobRecord{{ID: "hello", Description: "d", Status: model.StatusPassed, Message: &msg}}
	return rec
}

func TestFitRecord(t *testing.T) {
	marker := protocol.RecordMarker{Bucket: protocol.BucketRecords, Object: "job.json"}
	tests := []struct {
		name        string
		rec         model.RunRecord
		limit       int
		wantTrimmed bool
		wantErr     bool
	}{
		{"small record is stored as it is", bigRecord(3, 10), 64 << 10, false, false},
		{"long changed_files are cut", bigRecord(50000, 10), 256 << 10, true, false},
		{"long messages are shortened", bigRecord(0, 300<<10), 64 << 10, true, false},
		{"nothing fits a tiny limit", bigRecord(10, 10), 100, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			full, err := compactRecord(tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			got, trimmed, err := fitRecord(tc.rec, tc.limit, marker)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("fitRecord = %d bytes, want an error", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if trimmed != tc.wantTrimmed {
				t.Fatalf("trimmed = %v, want %v", trimmed, tc.wantTrimmed)
			}
			if len(got) > tc.limit {
				t.Errorf("%d bytes, more than the limit %d", len(got), tc.limit)
			}
			if !trimmed {
				if string(got) != string(full) {
					t.Error("an untrimmed record differs from its compact encoding")
				}
				return
			}
			var rec model.RunRecord
			if err := json.Unmarshal(got, &rec); err != nil {
				t.Fatalf("the trimmed value is not a run record: %v", err)
			}
			if rec.RunID != tc.rec.RunID || rec.Status != tc.rec.Status {
				t.Errorf("trimmed record %s %s, want %s %s", rec.RunID, rec.Status, tc.rec.RunID, tc.rec.Status)
			}
			var m struct {
				Marker protocol.RecordMarker `json:"jerichoci_record"`
			}
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatal(err)
			}
			want := protocol.RecordMarker{Trimmed: true, Bucket: protocol.BucketRecords, Object: "job.json", Bytes: len(full)}
			if m.Marker != want {
				t.Errorf("marker %+v, want %+v", m.Marker, want)
			}
		})
	}
}

func TestRunFinishedPayloadDecodesAsTheEvent(t *testing.T) {
	for _, files := range []int{2, 60000} {
		rec := bigRecord(files, 10)
		b, err := runFinishedPayload(rec, 128<<10, protocol.RecordMarker{})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 128<<10 {
			t.Errorf("%d files: payload of %d bytes", files, len(b))
		}
		var ev model.LifecycleEvent
		if err := json.Unmarshal(b, &ev); err != nil || ev.Event != model.EventRunFinished || ev.Run.RunID != rec.RunID {
			t.Errorf("%d files: payload does not decode as the run_finished event: %v", files, err)
		}
		if files == 2 {
			want, _ := encodeJSON(model.RunFinishedEvent(rec))
			if string(b) != string(want) {
				t.Errorf("a small run_finished differs from the event's encoding:\n%s\n%s", b, want)
			}
		}
	}
}
