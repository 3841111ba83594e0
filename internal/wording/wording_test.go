package wording

import (
	"strings"
	"testing"
)

func TestWording(t *testing.T) {
	long := `"` + strings.Repeat("x", 90) + `"`
	tests := []struct {
		name, got, want string
	}{
		{"field", Field("source.path"), "field `source.path`"},
		{"about", About("runtime.kind", "tart runtimes are refused"), "field `runtime.kind`: tart runtimes are refused"},
		{"missing", Missing("job_id", "a UUID string"), "field `job_id` is missing: expected a UUID string"},
		{"invalid", Invalid("schema_version", "1", `"1"`), "field `schema_version`: expected 1, got \"1\""},
		{"unknown", Unknown("priority", "5", OneOf([]string{"changed_files", "job_id"})),
			"field `priority` is not known (value 5): expected one of \"changed_files\", \"job_id\""},
		{"repeated", Repeated("target"), "field `target` appears more than once"},
		{"value as written", Value([]byte(" {\"a\": 1}\n")), `{"a": 1}`},
		{"value of 80 kept", Value([]byte(strings.Repeat("7", 80))), strings.Repeat("7", 80)},
		{"value of 81 cut", Value([]byte(strings.Repeat("7", 81))), strings.Repeat("7", 77) + "..."},
		{"long value cut", Value([]byte(long)), long[:77] + "..."},
		{"described array", Described([]byte("[1, 2]")), "an array ([1, 2])"},
		{"described string", Described([]byte(`"ls"`)), `a string ("ls")`},
		{"described number", Described([]byte("-1.5")), "a number (-1.5)"},
		{"described null", Described([]byte("null")), "null (null)"},
		{"described nothing", Described([]byte("  ")), "nothing"},
		{"described long", Described([]byte(long)), "a string (" + long[:77] + "...)"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
