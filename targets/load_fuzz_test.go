package targets

// FuzzParseCatalog fuzzes the catalog loader, Parse(name, data).
//
// It checks: no panic; a rejection is a nil catalog and an error made only
// of *FieldError naming the file, each with a clear message (non-empty,
// starting with a lowercase word or a quote, no fmt verb bug); an accepted
// catalog keeps its promises (ids and lane titles resolve, every job's
// command compiles, every filter compiles, merging over the built-in
// catalog does not panic); and it round-trips: the targets written back as a
// catalog file (the Target and Job JSON tags follow the file's shape) parse
// to the same targets. `go test -run Fuzz ./targets` runs the seeds (the
// catalog fixtures, the repository's jerichoci.lanes.json and
// testdata/fuzz/FuzzParseCatalog) as plain tests; `make fuzz` fuzzes it
// (scripts/fuzz).

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

// fuzzCatalogName is the file name the fuzzed catalogs are parsed under.
const fuzzCatalogName = "fuzz.lanes.json"

func FuzzParseCatalog(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "fixtures", "catalog", "*.json"))
	files = append(files, filepath.Join("..", DefaultFile))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if len(files) < 2 {
		f.Fatal("no catalog fixtures under testdata/fixtures/catalog")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(fuzzCatalogName, data)
		if err != nil {
			if c != nil {
				t.Fatalf("rejected catalog comes with a value (%v)", err)
			}
			fuzzCheckErr(t, data, err)
			return
		}
		if c.Name() != fuzzCatalogName || c.Len() == 0 {
			t.Fatalf("accepted catalog %q with %d targets", c.Name(), c.Len())
		}
		ts := c.Targets()
		for _, tg := range ts {
			fuzzCheckTarget(t, c, tg)
		}
		if m, err := Builtin().Merge(c); err != nil {
			fuzzCheckErr(t, data, err)
		} else if m.Len() < c.Len() {
			t.Fatalf("merged catalog has %d targets, the file alone %d", m.Len(), c.Len())
		}

		b := fuzzEncodeCatalog(t, c, ts)
		c2, err := Parse(fuzzCatalogName, b)
		if err != nil {
			t.Fatalf("Parse rejects the catalog written back %s (from %q): %v", b, data, err)
		}
		if c2.IncludesBuiltin() != c.IncludesBuiltin() {
			t.Fatalf("include_builtin %t became %t", c.IncludesBuiltin(), c2.IncludesBuiltin())
		}
		got, want := fuzzNormalize(c2.Targets()), fuzzNormalize(ts)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip changed the targets:\n got: %+v\nwant: %+v\nvia %s", got, want, b)
		}
		if b2 := fuzzEncodeCatalog(t, c2, c2.Targets()); !bytes.Equal(b, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b, b2)
		}
	})
}

// fuzzCheckTarget checks what an accepted target promises.
func fuzzCheckTarget(t *testing.T, c *Catalog, tg Target) {
	t.Helper()
	if got, err := c.Lookup(tg.ID); err != nil || got.ID != tg.ID {
		t.Fatalf("Lookup(%q) = %q, %v", tg.ID, got.ID, err)
	}
	if (tg.Lane == "") != (tg.Trigger == TriggerNone) {
		t.Fatalf("target %q: lane %q with trigger %q", tg.ID, tg.Lane, tg.Trigger)
	}
	if tg.Lane != "" {
		if got, err := c.LookupLane(tg.Lane); err != nil || got.ID != tg.ID {
			t.Fatalf("LookupLane(%q) = %q, %v", tg.Lane, got.ID, err)
		}
	}
	if tg.Source != fuzzCatalogName || len(tg.Jobs) == 0 {
		t.Fatalf("target %q: source %q, %d jobs", tg.ID, tg.Source, len(tg.Jobs))
	}
	for _, p := range append(tg.Filters, tg.LaneDefinitionPaths...) {
		if _, err := CompileGlob(p); err != nil {
			t.Fatalf("target %q: accepted pattern %q does not compile: %v", tg.ID, p, err)
		}
	}
	for _, j := range tg.Jobs {
		if _, root, err := j.Command.Compile(); err != nil || root != j.RunAsRoot {
			t.Fatalf("target %q job %q: command %+v compiles to root=%t, %v (job says run_as_root %t)",
				tg.ID, j.ID, j.Command, root, err, j.RunAsRoot)
		}
		if j.TimeoutSecs == 0 || j.Runtime.IsIncus() != (j.Runtime.Incus != nil) {
			t.Fatalf("target %q job %q: timeout %d, runtime %+v", tg.ID, j.ID, j.TimeoutSecs, j.Runtime)
		}
	}
}

// fuzzEncodeCatalog writes the targets of c back as a catalog file.
func fuzzEncodeCatalog(t *testing.T, c *Catalog, ts []Target) []byte {
	t.Helper()
	doc := struct {
		SchemaVersion       int      `json:"schema_version"`
		IncludeBuiltin      bool     `json:"include_builtin"`
		LaneDefinitionPaths []string `json:"lane_definition_paths,omitempty"`
		Targets             []Target `json:"targets"`
	}{SchemaVersion: SchemaVersion, IncludeBuiltin: c.IncludesBuiltin(), LaneDefinitionPaths: ts[0].LaneDefinitionPaths, Targets: ts}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("cannot write the accepted catalog back: %v", err)
	}
	return b
}

// fuzzNormalize makes empty and nil lists alike: the file form cannot tell
// them apart (omitempty).
func fuzzNormalize(ts []Target) []Target {
	for i := range ts {
		if len(ts[i].Filters) == 0 {
			ts[i].Filters = nil
		}
		if len(ts[i].LaneDefinitionPaths) == 0 {
			ts[i].LaneDefinitionPaths = nil
		}
	}
	return ts
}

// fuzzCheckErr fails unless err is a clear rejection of input: every error
// it joins is a *FieldError naming the file, whose message is non-empty,
// starts with a lowercase word or a quote, and shows no fmt verb bug (a
// "%!" is allowed when the input has a '%' a message may quote).
func fuzzCheckErr(t *testing.T, input []byte, err error) {
	t.Helper()
	var leaves []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		leaves = append(leaves, e)
	}
	walk(err)
	if len(leaves) == 0 {
		t.Fatalf("rejected with an empty error %#v", err)
	}
	percent := bytes.Contains(input, []byte("%")) || bytes.Contains(bytes.ToLower(input), []byte(`\u0025`))
	for _, e := range leaves {
		var fe *FieldError
		if !errors.As(e, &fe) || fe.File != fuzzCatalogName {
			t.Fatalf("error %T %q is not a *FieldError of %s", e, e, fuzzCatalogName)
		}
		msg := fe.Msg
		if strings.TrimSpace(msg) == "" {
			t.Fatalf("empty message in %q", e)
		}
		if strings.Contains(e.Error(), "%!") && !percent {
			t.Fatalf("fmt verb bug in error message %q", e)
		}
		if r, _ := utf8.DecodeRuneInString(msg); !unicode.IsLower(r) && !strings.ContainsRune("\"`'", r) {
			t.Fatalf("error message %q does not start with a lowercase word or a quote (in %q)", msg, e)
		}
	}
}
