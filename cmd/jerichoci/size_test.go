package main

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1048576", 1 << 20, false},
		{"4GiB", 4 << 30, false},
		{"512MiB", 512 << 20, false},
		{"8 KiB", 8 << 10, false},
		{"10B", 10, false},
		{"0", 0, false},
		{"", 0, true},
		{"-1", 0, true},
		{"4GB", 0, true},
		{"1.5GiB", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if s := formatSize(4 << 30); s != "4GiB" {
		t.Errorf("formatSize(4GiB) = %q", s)
	}
}
