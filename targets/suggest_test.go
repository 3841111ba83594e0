package targets

import (
	"errors"
	"testing"
)

func TestUnknownNamesSuggestAClose(t *testing.T) {
	c := Builtin()
	tests := []struct {
		name   string
		lookup func(string) (Target, error)
		arg    string
		want   string
	}{
		{"a target id", c.Lookup, "pre-merge-pika-rsut", "unknown job `pre-merge-pika-rsut`; did you mean `pre-merge-pika-rust`?"},
		{"ids only for an id", c.Lookup, "check-pika-rsut", "unknown job `check-pika-rsut`"},
		{"a lane title", c.LookupLane, "check-pika-rsut", "unknown job `check-pika-rsut`; did you mean `check-pika-rust`?"},
		{"either for resolve", c.Resolve, "nightly-pikaa", "unknown job `nightly-pikaa`; did you mean `nightly-pika`?"},
		{"nothing close", c.Resolve, "nope", "unknown job `nope`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.lookup(tc.arg)
			if err == nil || err.Error() != tc.want || !errors.Is(err, ErrUnknownTarget) {
				t.Errorf("error = %v, want %s", err, tc.want)
			}
		})
	}
}
