package model

import (
	"encoding/json"
	"testing"
)

// BenchmarkEncodeRunRecord measures writing a run record in the original's
// format (custom marshalers: field order, nulls, +00:00 timestamps).
func BenchmarkEncodeRunRecord(b *testing.B) {
	rec := goldenRecords()["run-failed-skipped.golden.json"].(RunRecord)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeFile(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeRunRecordBaseline is the same document as a generic
// map through encoding/json: the baseline the ratio in BENCHMARKS.md uses.
func BenchmarkEncodeRunRecordBaseline(b *testing.B) {
	raw, _ := EncodeFile(goldenRecords()["run-failed-skipped.golden.json"].(RunRecord))
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.MarshalIndent(m, "", "  "); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRunRecord measures reading run.json with the strict
// checks (required keys, legacy role, repeated keys).
func BenchmarkDecodeRunRecord(b *testing.B) {
	raw, _ := EncodeFile(goldenRecords()["run-failed-skipped.golden.json"].(RunRecord))
	b.ReportAllocs()
	for b.Loop() {
		var r RunRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRunRecordBaseline decodes the same bytes into a map.
func BenchmarkDecodeRunRecordBaseline(b *testing.B) {
	raw, _ := EncodeFile(goldenRecords()["run-failed-skipped.golden.json"].(RunRecord))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			b.Fatal(err)
		}
	}
}
