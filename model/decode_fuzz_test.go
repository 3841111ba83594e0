package model

// Fuzz targets of the model's decoders: the job spec (ParseJobSpec), the
// run record (json.Unmarshal into RunRecord) and the image record with its
// legacy `role` key (json.Unmarshal into RemoteLinuxVMImageRecord).
//
// Each checks: no panic; a rejection is a non-nil error whose message is
// clear (see fuzzCheckErr); and what is accepted round-trips: encoded with
// the package's encoder and decoded again it is the same value, and encoded
// again the same bytes. `go test -run Fuzz ./model` runs the seeds (the
// fixtures under testdata/fixtures and testdata/fuzz/FuzzX) as plain tests;
// `make fuzz` fuzzes each target in turn (scripts/fuzz).

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

const fuzzFixtures = "../testdata/fixtures"

// fuzzSeedFiles adds every file matching the glob pattern as a seed.
func fuzzSeedFiles(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files %s: %v", pattern, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// fuzzCheckErr fails unless err is a clear rejection of input: non-nil, and
// every error it joins has a non-empty message that starts with a lowercase
// letter or a quote and shows no fmt verb bug ("%!v(…)", "%!(EXTRA …)").
// A "%!" is allowed when the input has a '%' of its own, which a message may
// quote.
func fuzzCheckErr(t *testing.T, input []byte, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("rejected without an error: %q", input)
	}
	var check func(error)
	check = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			errs := j.Unwrap()
			if len(errs) == 0 {
				t.Fatalf("joined error %T without errors for %q", e, input)
			}
			for _, e := range errs {
				check(e)
			}
			return
		}
		if e == nil {
			t.Fatalf("nil error inside %v for %q", err, input)
		}
		fuzzCheckMsg(t, input, e.Error())
	}
	check(err)
	fuzzCheckMsg(t, input, err.Error())
}

func fuzzCheckMsg(t *testing.T, input []byte, msg string) {
	t.Helper()
	if strings.TrimSpace(msg) == "" {
		t.Fatalf("empty error message for %q", input)
	}
	if strings.Contains(msg, "%!") && !fuzzHasPercent(input) {
		t.Fatalf("fmt verb bug in error message %q for %q", msg, input)
	}
	if r, _ := utf8.DecodeRuneInString(msg); !unicode.IsLower(r) && !strings.ContainsRune("\"`'", r) {
		t.Fatalf("error message %q does not start with a lowercase word or a quote (input %q)", msg, input)
	}
}

// fuzzHasPercent reports whether input can put a '%' into a message: as
// such or JSON-escaped.
func fuzzHasPercent(input []byte) bool {
	return bytes.Contains(input, []byte("%")) || bytes.Contains(bytes.ToLower(input), []byte(`\u0025`))
}

func FuzzParseJobSpec(f *testing.F) {
	fuzzSeedFiles(f, filepath.Join(fuzzFixtures, "jobspecs", "valid", "*.json"))
	fuzzSeedFiles(f, filepath.Join(fuzzFixtures, "jobspecs", "invalid", "*.json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseJobSpec(data)
		if err != nil {
			fuzzCheckErr(t, data, err)
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error %q does not wrap ErrInvalidSpec", err)
			}
			var ise *InvalidSpecError
			if !errors.As(err, &ise) || len(ise.Problems) == 0 {
				t.Fatalf("error %q is not an *InvalidSpecError with problems", err)
			}
			for _, p := range ise.Problems {
				fuzzCheckErr(t, data, p)
			}
			if !reflect.DeepEqual(s, JobSpec{}) {
				t.Fatalf("rejected spec comes with a value: %+v", s)
			}
			return
		}
		if s.SchemaVersion != JobSpecVersion || (s.Lane == "") == (s.Target == "") || s.Name() == "" {
			t.Fatalf("accepted spec breaks its invariants: %+v", s)
		}
		b, err := s.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of the accepted %q: %v", data, err)
		}
		s2, err := ParseJobSpec(b)
		if err != nil {
			t.Fatalf("ParseJobSpec rejects its own encoding %s (of %q): %v", b, data, err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip changed the spec:\n got: %+v\nwant: %+v\nvia %s", s2, s, b)
		}
		if b2, err := s2.MarshalJSON(); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("encoding not stable: %s then %s (%v)", b, b2, err)
		}
	})
}

func FuzzRunRecord(f *testing.F) {
	fuzzSeedFiles(f, filepath.Join(fuzzFixtures, "records", "*.json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r RunRecord
		if err := json.Unmarshal(data, &r); err != nil {
			fuzzCheckErr(t, data, err)
			return
		}
		if r.ChangedFiles == nil || r.Filters == nil || r.PrepareTimings == nil || r.Jobs == nil {
			t.Fatalf("decoded record has a nil list: %+v", r)
		}
		// run.json is written with EncodeFile, events and KV entries with
		// EncodeCompact: both must read back to the same record.
		b := fuzzRoundTrip(t, data, r, EncodeCompact)
		fuzzRoundTrip(t, data, r, EncodeFile)
		// No list is ever written as null.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"changed_files", "filters", "prepare_timings", "jobs"} {
			if string(m[k]) == "null" || m[k] == nil {
				t.Fatalf("%s written as %s in %s", k, m[k], b)
			}
		}
	})
}

func FuzzImageRecord(f *testing.F) {
	fuzzSeedFiles(f, filepath.Join(fuzzFixtures, "records", "image-*.json"))
	for _, img := range fuzzImageSeeds(f) { // the incus_image objects of the run records
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r RemoteLinuxVMImageRecord
		if err := json.Unmarshal(data, &r); err != nil {
			fuzzCheckErr(t, data, err)
			return
		}
		if r.GuestRole != nil && !r.GuestRole.Valid() {
			t.Fatalf("accepted an unknown guest role %q from %q", *r.GuestRole, data)
		}
		b := fuzzRoundTrip(t, data, r, EncodeCompact)
		// The legacy key is read, never written.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["role"]; ok {
			t.Fatalf("legacy key `role` written back: %s", b)
		}
		if _, ok := m["guest_role"]; ok != (r.GuestRole != nil) {
			t.Fatalf("guest_role %v written as %s", r.GuestRole, b)
		}
	})
}

// fuzzImageSeeds returns the incus_image objects of the run records under
// testdata/fixtures/records, legacy `role` ones included.
func fuzzImageSeeds(f *testing.F) [][]byte {
	files, _ := filepath.Glob(filepath.Join(fuzzFixtures, "records", "*.json"))
	var out [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var run struct {
			Jobs []struct {
				Exec *struct {
					Image json.RawMessage `json:"incus_image"`
				} `json:"remote_linux_vm_execution"`
			} `json:"jobs"`
		}
		if json.Unmarshal(b, &run) != nil {
			continue
		}
		for _, j := range run.Jobs {
			if j.Exec != nil && len(j.Exec.Image) > 0 && string(j.Exec.Image) != "null" {
				out = append(out, j.Exec.Image)
			}
		}
	}
	if len(out) == 0 {
		f.Fatal("no incus_image objects in the record fixtures")
	}
	return out
}

// fuzzRoundTrip encodes v (decoded from data) with enc, decodes that into a
// new T and checks it equals v and encodes to the same bytes; it returns
// the encoding.
func fuzzRoundTrip[T any](t *testing.T, data []byte, v T, enc func(any) ([]byte, error)) []byte {
	t.Helper()
	b, err := enc(v)
	if err != nil {
		t.Fatalf("cannot encode the value decoded from %q: %v", data, err)
	}
	var v2 T
	if err := json.Unmarshal(b, &v2); err != nil {
		t.Fatalf("decoder rejects its own encoding %s (of %q): %v", b, data, err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("round trip changed the value:\n got: %+v\nwant: %+v\nvia %s", v2, v, b)
	}
	if b2, err := enc(v2); err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("encoding not stable:\n%s\n%s\n(%v)", b, b2, err)
	}
	return b
}
