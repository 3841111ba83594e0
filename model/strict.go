package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
)

// StrictObject decodes one JSON object strictly, for decoders that report
// every problem of a document at once: the job spec (ParseJobSpec) and the
// catalog file (targets.Parse).
//
// The caller asks for each field it knows by name. A problem with a field is
// handed, as a StrictProblem, to the report function the object was made
// with, which words and records it: StrictObject itself says nothing to the
// user; both decoders word problems the same way, through internal/wording
// (each adds its own context: the catalog names the file and the entry).
// When the caller has asked for everything, Unknown lists the fields it
// never asked for, and Repeated the keys the document wrote more than once
// (encoding/json would silently keep the last); the caller reports them
// (FailUnknown, FailRepeated).
//
// A JSON null counts as an absent field everywhere.
type StrictObject struct {
	path     string // dotted path from the outermost object, "" for it
	keys     []string
	fields   map[string]json.RawMessage
	repeated []string
	used     map[string]bool
	failed   map[string]bool
	report   func(StrictProblem)
}

// StrictKind says what is wrong with a field.
type StrictKind int

// The kinds of StrictProblem.
const (
	// StrictMissing: a required field is absent or null. Expected says
	// what it should hold.
	StrictMissing StrictKind = iota + 1
	// StrictInvalid: the value is not what was expected, or not an object
	// where one was expected. Value and Expected are set.
	StrictInvalid
	// StrictUnknown: the caller does not know the field (FailUnknown).
	// Value is set, and Known lists the fields the caller asked for.
	StrictUnknown
	// StrictOther: anything else, in the caller's words (Failf): Msg.
	StrictOther
	// StrictRepeated: the object writes the key more than once
	// (FailRepeated, for a key of Repeated).
	StrictRepeated
)

// StrictProblem is one problem with one field of a StrictObject.
type StrictProblem struct {
	Kind     StrictKind
	Field    string          // dotted path from the outermost object, e.g. "runtime.incus.guest_role" or "filters[2]"
	Value    json.RawMessage // the value as written; nil when missing
	Expected string          // StrictMissing, StrictInvalid: what the field should hold
	Known    []string        // StrictUnknown: the fields asked for, sorted
	Msg      string          // StrictOther: the whole problem
}

// NewStrictObject reads raw, which must be exactly one JSON object, for
// strict decoding; report receives every problem found in it and in its
// sub-objects (see Sub). It fails, reporting nothing, when raw is not valid
// JSON (the error is then CheckJSON's *JSONError) or not an object. Repeated
// keys are not an error here: Repeated lists them, and the first occurrence
// is the value.
func NewStrictObject(raw []byte, report func(StrictProblem)) (*StrictObject, error) {
	if !json.Valid(raw) {
		return nil, CheckJSON(raw)
	}
	return newStrictObject("", raw, report)
}

func newStrictObject(path string, raw []byte, report func(StrictProblem)) (*StrictObject, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil {
		return nil, err
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	o := &StrictObject{path: path, fields: map[string]json.RawMessage{}, used: map[string]bool{},
		failed: map[string]bool{}, report: report}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := o.fields[key]; dup {
			if !slices.Contains(o.repeated, key) {
				o.repeated = append(o.repeated, key)
			}
			continue
		}
		o.keys = append(o.keys, key)
		o.fields[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return o, nil
}

// FieldPath returns the dotted path of one of the object's fields from the
// outermost object: "kind" in the object at "runtime" is "runtime.kind".
func (o *StrictObject) FieldPath(field string) string {
	if o.path == "" {
		return field
	}
	return o.path + "." + field
}

// Has reports whether the field is present and not null. It does not count
// as asking for the field.
func (o *StrictObject) Has(field string) bool {
	raw, ok := o.fields[field]
	return ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// Raw asks for a field and returns its value as written; false when it is
// absent or null, which is reported (StrictMissing) when it is required.
func (o *StrictObject) Raw(field string, required bool, expected string) (json.RawMessage, bool) {
	o.used[field] = true
	if !o.Has(field) {
		if required {
			o.add(field, StrictProblem{Kind: StrictMissing, Expected: expected})
		}
		return nil, false
	}
	return o.fields[field], true
}

// Decode asks for a field and decodes it into v with encoding/json; false
// when it is absent (see Raw) or when encoding/json rejects it, which is
// reported (StrictInvalid).
func (o *StrictObject) Decode(field string, required bool, expected string, v any) bool {
	raw, ok := o.Raw(field, required, expected)
	if !ok {
		return false
	}
	if json.Unmarshal(raw, v) != nil {
		o.Fail(field, raw, expected)
		return false
	}
	return true
}

// Str asks for a string field (see Decode).
func (o *StrictObject) Str(field string, required bool, expected string) (string, bool) {
	var s string
	ok := o.Decode(field, required, expected, &s)
	return s, ok
}

// Bool asks for a boolean field (see Decode).
func (o *StrictObject) Bool(field string, required bool, expected string) (bool, bool) {
	var b bool
	ok := o.Decode(field, required, expected, &b)
	return b, ok
}

// Array asks for an array field and returns its elements as written (see
// Decode).
func (o *StrictObject) Array(field string, required bool, expected string) ([]json.RawMessage, bool) {
	var a []json.RawMessage
	ok := o.Decode(field, required, expected, &a)
	return a, ok
}

// Uint asks for a field holding a whole number >= 0 that fits in 64 bits,
// written without fraction or exponent; false when it is absent (see Raw)
// or not such a number, which is reported (StrictInvalid).
func (o *StrictObject) Uint(field string, required bool, expected string) (uint64, bool) {
	raw, ok := o.Raw(field, required, expected)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		o.Fail(field, raw, expected)
		return 0, false
	}
	return n, true
}

// Strings asks for an array of strings. A value that is not an array is
// reported as for Array; each element that is not a string is reported on
// its own (StrictInvalid of "field[i]", expected "a string") and left out of
// the result, and then the result comes with false.
func (o *StrictObject) Strings(field string, required bool, expected string) ([]string, bool) {
	raws, ok := o.Array(field, required, expected)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(raws))
	for i, raw := range raws {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			o.Fail(fmt.Sprintf("%s[%d]", field, i), raw, "a string")
			ok = false
			continue
		}
		out = append(out, s)
	}
	return out, ok
}

// Sub asks for a field holding an object and returns it, reporting to the
// same function; nil when it is absent (see Raw) or not an object, which is
// reported (StrictInvalid). The caller checks its Repeated keys.
func (o *StrictObject) Sub(field string, required bool, expected string) *StrictObject {
	raw, ok := o.Raw(field, required, expected)
	if !ok {
		return nil
	}
	s, err := newStrictObject(o.FieldPath(field), raw, o.report)
	if err != nil {
		o.Fail(field, raw, expected)
		return nil
	}
	return s
}

// Fail reports that a field's value (as written, or as the caller shows it)
// is not what was expected: a StrictInvalid problem.
func (o *StrictObject) Fail(field string, value json.RawMessage, expected string) {
	o.add(field, StrictProblem{Kind: StrictInvalid, Value: value, Expected: expected})
}

// Failf reports a problem with a field in the caller's own words: a
// StrictOther problem whose Msg is fmt.Sprintf(format, a...).
func (o *StrictObject) Failf(field, format string, a ...any) {
	o.add(field, StrictProblem{Kind: StrictOther, Msg: fmt.Sprintf(format, a...)})
}

// FailUnknown reports a field the caller does not know (one of Unknown): a
// StrictUnknown problem with its value and the fields asked for so far.
func (o *StrictObject) FailUnknown(field string) {
	o.add(field, StrictProblem{Kind: StrictUnknown, Value: o.fields[field], Known: o.known()})
}

// FailMissing reports a field the caller requires and the document lacks,
// when the caller decides so itself (else Raw and its kin report it): a
// StrictMissing problem.
func (o *StrictObject) FailMissing(field, expected string) {
	o.add(field, StrictProblem{Kind: StrictMissing, Expected: expected})
}

// FailRepeated reports a key the object writes more than once (one of
// Repeated): a StrictRepeated problem.
func (o *StrictObject) FailRepeated(field string) {
	o.add(field, StrictProblem{Kind: StrictRepeated})
}

func (o *StrictObject) add(field string, p StrictProblem) {
	o.failed[field] = true
	p.Field = o.FieldPath(field)
	o.report(p)
}

// Failed reports whether a problem with the field has been reported.
func (o *StrictObject) Failed(field string) bool { return o.failed[field] }

// Unknown lists the fields nobody asked for, in the order the document
// first writes them.
func (o *StrictObject) Unknown() []string {
	var unknown []string
	for _, k := range o.keys {
		if !o.used[k] {
			unknown = append(unknown, k)
		}
	}
	return unknown
}

// Repeated lists the keys the document writes more than once, in the order
// of their second occurrence.
func (o *StrictObject) Repeated() []string { return slices.Clone(o.repeated) }

func (o *StrictObject) known() []string {
	known := make([]string, 0, len(o.used))
	for k := range o.used {
		known = append(known, k)
	}
	sort.Strings(known)
	return known
}

// JSONError says why some bytes are not one JSON value encoding/json can
// decode (CheckJSON).
type JSONError struct {
	Err error // from encoding/json: a *json.SyntaxError for bad syntax
	// For a syntax error: Offset counts the bytes read up to and including
	// the offending one (as json.SyntaxError does), and Line and Column
	// (from 1, in bytes) place the offending byte. All 0 otherwise, for
	// instance for a number too large for a float64.
	Offset       int64
	Line, Column int
}

func (e *JSONError) Error() string {
	if e.Line == 0 {
		return "invalid JSON: " + e.Err.Error()
	}
	return fmt.Sprintf("invalid JSON at byte %d (line %d, column %d): %v", e.Offset, e.Line, e.Column, e.Err)
}

func (e *JSONError) Unwrap() error { return e.Err }

// CheckJSON returns nil when data is one JSON value that encoding/json
// decodes into an any, and otherwise a *JSONError.
func CheckJSON(data []byte) error {
	var v any
	err := json.Unmarshal(data, &v)
	if err == nil {
		return nil
	}
	e := &JSONError{Err: err}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		pos := max(se.Offset-1, 0) // the offending byte
		e.Offset = se.Offset
		e.Line = 1 + bytes.Count(data[:pos], []byte("\n"))
		e.Column = int(pos) - bytes.LastIndexByte(data[:pos], '\n')
	}
	return e
}
