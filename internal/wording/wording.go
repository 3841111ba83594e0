// Package wording is how the project's strict decoders (the job spec,
// model.ParseJobSpec, and the catalog file, targets.Parse) tell a problem
// with a field: one wording for both, the one docs/PROTOCOL.md gives for
// the job spec. A field is named with backquotes and its dotted path
// (field `runtime.kind`), a value as written, cut after 77 bytes when it
// is longer than 80. It is a leaf: the standard library only.
package wording

import (
	"bytes"
	"strconv"
	"strings"
)

// Field names a field by its dotted path: field `runtime.kind`.
func Field(path string) string { return "field `" + path + "`" }

// About is a problem with field in the caller's own words: field `f`: msg.
func About(field, msg string) string { return Field(field) + ": " + msg }

// Missing is a required field that is absent (or null).
func Missing(field, expected string) string {
	return Field(field) + " is missing: expected " + expected
}

// Invalid is a field whose value (as Value shows it, or as the caller
// does) is not what was expected.
func Invalid(field, expected, value string) string {
	return About(field, "expected "+expected+", got "+value)
}

// Unknown is a field the decoder does not know, with its value (as Value
// shows it) and what it expected instead (OneOf the fields it knows).
func Unknown(field, value, expected string) string {
	return Field(field) + " is not known (value " + value + "): expected " + expected
}

// OneOf lists names to choose from: one of "a", "b".
func OneOf(names []string) string {
	q := make([]string, len(names))
	for i, k := range names {
		q[i] = strconv.Quote(k)
	}
	return "one of " + strings.Join(q, ", ")
}

// Repeated is a key an object writes more than once.
func Repeated(field string) string { return Field(field) + " appears more than once" }

// Described names the kind of a JSON value and shows it (as Value does),
// for a value that is not the kind of JSON expected: an array ([1, 2]).
func Described(raw []byte) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	kind := map[byte]string{'{': "an object", '[': "an array", '"': "a string", 't': "a boolean", 'f': "a boolean", 'n': "null"}[t[0]]
	if kind == "" {
		kind = "a number"
	}
	return kind + " (" + Value(t) + ")"
}

// Value shows a JSON value as written, without surrounding space, cut
// after 77 bytes ("...") when longer than 80.
func Value(raw []byte) string {
	t := bytes.TrimSpace(raw)
	if len(t) > 80 {
		return string(t[:77]) + "..."
	}
	return string(t)
}
