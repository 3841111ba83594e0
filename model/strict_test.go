package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// collect returns a report function that records each problem as one line.
func collect(lines *[]string) func(StrictProblem) {
	return func(p StrictProblem) {
		*lines = append(*lines, fmt.Sprintf("%d %s value=%s expected=%q known=%v msg=%q",
			p.Kind, p.Field, p.Value, p.Expected, p.Known, p.Msg))
	}
}

func TestStrictObjectGetters(t *testing.T) {
	var got []string
	o, err := NewStrictObject([]byte(`{
		"s": "a", "n": 7, "b": true, "a": [1, {}], "ss": ["x", 2, "y"],
		"bad_s": 1, "bad_n": -1, "bad_b": "yes", "bad_a": {}, "nul": null,
		"sub": {"k": "v", "k": "w", "extra": 1}, "notsub": [],
		"z_unknown": 1, "a_unknown": 2}`), collect(&got))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := o.Str("s", true, "a string"); !ok || s != "a" {
		t.Errorf("Str = %q, %v", s, ok)
	}
	if n, ok := o.Uint("n", true, "a count"); !ok || n != 7 {
		t.Errorf("Uint = %d, %v", n, ok)
	}
	if b, ok := o.Bool("b", true, "true or false"); !ok || !b {
		t.Errorf("Bool = %v, %v", b, ok)
	}
	if a, ok := o.Array("a", true, "an array"); !ok || len(a) != 2 || string(a[1]) != "{}" {
		t.Errorf("Array = %s, %v", a, ok)
	}
	if ss, ok := o.Strings("ss", false, "names"); ok || !reflect.DeepEqual(ss, []string{"x", "y"}) {
		t.Errorf("Strings = %q, %v; want the good elements and false", ss, ok)
	}
	o.Str("bad_s", false, "a string")
	o.Uint("bad_n", false, "a count")
	o.Bool("bad_b", false, "true or false")
	o.Array("bad_a", false, "an array")
	if raw, ok := o.Raw("nul", true, "something"); ok || raw != nil {
		t.Errorf("Raw(null) = %s, %v; want absent", raw, ok)
	}
	if o.Has("nul") || !o.Has("s") || o.Has("absent") {
		t.Error("Has: null and absent fields must not count, present ones must")
	}
	sub := o.Sub("sub", true, "an object")
	if sub == nil {
		t.Fatal("Sub = nil")
	}
	if r := sub.Repeated(); !reflect.DeepEqual(r, []string{"k"}) {
		t.Errorf("Repeated = %q", r)
	}
	if v, _ := sub.Str("k", true, "a string"); v != "v" {
		t.Errorf("a repeated key keeps its first value, got %q", v)
	}
	sub.Failf("k", "is %s", "wrong")
	for _, f := range sub.Unknown() {
		sub.FailUnknown(f)
	}
	if o.Sub("notsub", true, "an object") != nil || !o.Failed("notsub") {
		t.Error("Sub of an array must be nil and fail the field")
	}
	if o.Sub("missing", true, "an object") != nil {
		t.Error("Sub of a missing field must be nil")
	}
	if o.Failed("s") || !o.Failed("bad_s") {
		t.Error("Failed must name exactly the fields with a problem")
	}
	if u := o.Unknown(); !reflect.DeepEqual(u, []string{"z_unknown", "a_unknown"}) {
		t.Errorf("Unknown = %q, want document order", u)
	}
	o.FailUnknown("a_unknown")
	want := []string{
		`2 ss[1] value=2 expected="a string" known=[] msg=""`,
		`2 bad_s value=1 expected="a string" known=[] msg=""`,
		`2 bad_n value=-1 expected="a count" known=[] msg=""`,
		`2 bad_b value="yes" expected="true or false" known=[] msg=""`,
		`2 bad_a value={} expected="an array" known=[] msg=""`,
		`1 nul value= expected="something" known=[] msg=""`,
		`4 sub.k value= expected="" known=[] msg="is wrong"`,
		`3 sub.extra value=1 expected="" known=[k] msg=""`,
		`2 notsub value=[] expected="an object" known=[] msg=""`,
		`1 missing value= expected="an object" known=[] msg=""`,
		`3 a_unknown value=2 expected="" known=[a b bad_a bad_b bad_n bad_s missing n notsub nul s ss sub] msg=""`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

func TestNewStrictObjectRefuses(t *testing.T) {
	for _, in := range []string{``, `[1]`, `"x"`, `{"a":1} {}`, `{"a":1`, `{"a" 1}`} {
		o, err := NewStrictObject([]byte(in), func(p StrictProblem) { t.Errorf("%q reported %+v", in, p) })
		if o != nil || err == nil {
			t.Errorf("NewStrictObject(%q) = %v, %v; want an error", in, o, err)
		}
		var je *JSONError
		if json.Valid([]byte(in)) == errors.As(err, &je) {
			t.Errorf("NewStrictObject(%q): %v; want a *JSONError exactly for invalid JSON", in, err)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	if err := CheckJSON([]byte(" {\"a\": [1]}\n")); err != nil {
		t.Errorf("valid JSON: %v", err)
	}
	err := CheckJSON([]byte("{\n  \"a\": 1,\n  \"b\" 2\n}"))
	var je *JSONError
	var se *json.SyntaxError
	if !errors.As(err, &je) || !errors.As(err, &se) {
		t.Fatalf("CheckJSON = %v, want a *JSONError wrapping a *json.SyntaxError", err)
	}
	if je.Offset != 19 || je.Line != 3 || je.Column != 7 {
		t.Errorf("offset %d line %d column %d, want 19, 3, 7", je.Offset, je.Line, je.Column)
	}
	if want := "invalid JSON at byte 19 (line 3, column 7): invalid character '2' after object key"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	// Valid syntax encoding/json still cannot decode: no position.
	err = CheckJSON([]byte(`{"n": 1e400}`))
	if !errors.As(err, &je) || je.Line != 0 || je.Offset != 0 || errors.As(err, &se) {
		t.Errorf("CheckJSON(1e400) = %#v", err)
	}
}
