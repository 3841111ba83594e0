package model

import "testing"

func TestValue(t *testing.T) {
	s := "set"
	tests := []struct {
		name string
		p    *string
		want string
	}{
		{"absent", nil, ""},
		{"set", &s, "set"},
		{"set empty", new(string), ""},
	}
	for _, tc := range tests {
		if got := Value(tc.p); got != tc.want {
			t.Errorf("%s: Value = %q, want %q", tc.name, got, tc.want)
		}
	}
	if n := 3; Value(&n) != 3 || Value[int](nil) != 0 {
		t.Errorf("Value of *int: %d, %d", Value(&n), Value[int](nil))
	}
}
