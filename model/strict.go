package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// FieldError is one problem with one field of a decoded document.
type FieldError struct {
	Field    string // dotted path, e.g. "source.path"
	Value    string // the offending JSON value as written, "" when missing
	Expected string // what was expected
	Problem  string // "missing", "unknown", "invalid"
}

func (e *FieldError) Error() string {
	switch e.Problem {
	case "missing":
		return fmt.Sprintf("field `%s` is missing: expected %s", e.Field, e.Expected)
	case "unknown":
		return fmt.Sprintf("field `%s` is not known (value %s): expected %s", e.Field, e.Value, e.Expected)
	}
	return fmt.Sprintf("field `%s`: expected %s, got %s", e.Field, e.Expected, e.Value)
}

// object decodes one JSON object strictly, collecting every problem.
type object struct {
	path   string
	fields map[string]json.RawMessage
	used   map[string]bool
	errs   *[]error
}

func (o *object) name(f string) string {
	if o.path == "" {
		return f
	}
	return o.path + "." + f
}

func shown(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) > 80 {
		return string(t[:77]) + "..."
	}
	return string(t)
}

// newObject starts decoding raw as an object at path; nil when raw is not one
// (the problem is recorded).
func newObject(path string, raw json.RawMessage, expected string, errs *[]error) *object {
	fields, err := objectFields(raw, "value")
	if err != nil {
		var fe error = &FieldError{Field: path, Value: shown(raw), Expected: expected, Problem: "invalid"}
		if path == "" {
			fe = fmt.Errorf("expected %s, got %s", expected, describeJSON(raw))
			var syn *json.SyntaxError
			if !json.Valid(raw) && errors.As(jsonSyntax(raw), &syn) {
				fe = fmt.Errorf("expected %s, got invalid JSON (%v at byte %d)", expected, syn, syn.Offset)
			}
		}
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) && json.Valid(raw) {
			// A valid object with a repeated key.
			fe = fmt.Errorf("%s%s", prefix(path), trimWhat(err.Error()))
		}
		*errs = append(*errs, fe)
		return nil
	}
	return &object{path: path, fields: fields, used: map[string]bool{}, errs: errs}
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return "field `" + path + "`: "
}

func trimWhat(s string) string { return string(bytes.TrimPrefix([]byte(s), []byte("value: "))) }

func (o *object) fail(field string, raw json.RawMessage, expected string) {
	*o.errs = append(*o.errs, &FieldError{Field: o.name(field), Value: shown(raw), Expected: expected, Problem: "invalid"})
}

// get returns a field's raw value; a JSON null counts as absent.
func (o *object) get(field string, required bool, expected string) (json.RawMessage, bool) {
	o.used[field] = true
	raw, ok := o.fields[field]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if required {
			*o.errs = append(*o.errs, &FieldError{Field: o.name(field), Expected: expected, Problem: "missing"})
		}
		return nil, false
	}
	return raw, true
}

func (o *object) has(field string) bool {
	raw, ok := o.fields[field]
	return ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func (o *object) str(field string, required bool, expected string) (string, bool) {
	raw, ok := o.get(field, required, expected)
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		o.fail(field, raw, expected)
		return "", false
	}
	return s, true
}

func (o *object) uint(field string, required bool, expected string) (uint64, bool) {
	raw, ok := o.get(field, required, expected)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		o.fail(field, raw, expected)
		return 0, false
	}
	return n, true
}

func (o *object) strings(field string, expected string) ([]string, bool) {
	raw, ok := o.get(field, false, expected)
	if !ok {
		return nil, false
	}
	var xs []string
	if err := json.Unmarshal(raw, &xs); err != nil {
		o.fail(field, raw, expected)
		return nil, false
	}
	return xs, true
}

func (o *object) sub(field string, required bool, expected string) *object {
	raw, ok := o.get(field, required, expected)
	if !ok {
		return nil
	}
	return newObject(o.name(field), raw, expected, o.errs)
}

// done records every field that was not asked for as unknown.
func (o *object) done() {
	var unknown []string
	for f := range o.fields {
		if !o.used[f] {
			unknown = append(unknown, f)
		}
	}
	sort.Strings(unknown)
	known := make([]string, 0, len(o.used))
	for f := range o.used {
		known = append(known, f)
	}
	sort.Strings(known)
	for _, f := range unknown {
		*o.errs = append(*o.errs, &FieldError{Field: o.name(f), Value: shown(o.fields[f]),
			Expected: "one of " + quoteList(known), Problem: "unknown"})
	}
}

func jsonSyntax(raw []byte) error {
	var v any
	return json.Unmarshal(raw, &v)
}
