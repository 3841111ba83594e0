package units

import (
	"math"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "1048576", want: 1 << 20},
		{in: "0", want: 0},
		{in: "0GiB", want: 0},
		{in: "10B", want: 10},
		{in: "4GiB", want: 4 << 30},
		{in: "10GiB", want: 10 << 30},
		{in: "10GB", want: 10_000_000_000},
		{in: "512MiB", want: 512 << 20},
		{in: "2kB", want: 2000},
		{in: "8KiB", want: 8 << 10},
		{in: "7EiB", want: 7 << 60},
		{in: "9223372036854775807", want: math.MaxInt64},
		{in: "", wantErr: `"" is not a size`},
		{in: "GiB", wantErr: `"GiB" is not a size`},
		{in: "-1", wantErr: `"-1" is not a size`},
		{in: "+1", wantErr: `"+1" is not a size`},
		{in: "1.5GiB", wantErr: `"1.5GiB" is not a size`},
		{in: "8 KiB", wantErr: `"8 KiB" is not a size`},
		{in: " 4GiB", wantErr: `" 4GiB" is not a size`},
		{in: "4GiB\n", wantErr: `"4GiB\n" is not a size`},
		{in: "20gib", wantErr: `"20gib" is not a size`},
		{in: "4KB", wantErr: `"4KB" is not a size`},
		{in: "8EiB", wantErr: `size "8EiB" is too large`},
		{in: "99999999999TiB", wantErr: `size "99999999999TiB" is too large`},
		{in: "99999999999999999999", wantErr: `size "99999999999999999999" is too large`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSize(%q) = %d, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestFormatSizeReadsBack(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0"}, {1000, "1000"}, {1 << 10, "1KiB"}, {1536 << 10, "1536KiB"},
		{4 << 30, "4GiB"}, {10_000_000_000, "9765625KiB"}, {1_000_000_001, "1000000001"}, {3 << 60, "3EiB"},
	}
	for _, tc := range tests {
		s := FormatSize(tc.n)
		if s != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.n, s, tc.want)
		}
		if back, err := ParseSize(s); err != nil || back != tc.n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tc.n, back, err)
		}
	}
}
