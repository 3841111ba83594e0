package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// The serve flags take a size as units.ParseSize reads it (the grammar's
// table test is there); these check the flag's own part: 0 is a count,
// the default is written back in a form it reads, an error names the flag.
func TestSizeFlag(t *testing.T) {
	tests := []struct {
		arg     string
		want    int64
		wantErr string
	}{
		{arg: "4GiB", want: 4 << 30},
		{arg: "10GB", want: 10_000_000_000},
		{arg: "0", want: 0},
		{arg: "1048576", want: 1 << 20},
		{arg: "8 KiB", wantErr: `invalid value "8 KiB" for flag -max-source-bytes: "8 KiB" is not a size`},
		{arg: "-1", wantErr: `"-1" is not a size`},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			n := int64(7)
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.Var(sizeFlag{&n}, "max-source-bytes", "")
			err := fs.Parse([]string{"--max-source-bytes", tc.arg})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse %q: %v, want an error containing %q", tc.arg, err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.want {
				t.Fatalf("parse %q: %d, %v; want %d", tc.arg, n, err, tc.want)
			}
		})
	}
	n := int64(4 << 30)
	if s := (sizeFlag{&n}).String(); s != "4GiB" {
		t.Errorf("sizeFlag(4GiB).String() = %q", s)
	}
}
