package testenv

import (
	"flag"
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Skipf and Fatalf instead of
// ending the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recorder) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestNeeds(t *testing.T) {
	tests := []struct {
		short, ci     string
		skip, failure string // substrings; "" = must not happen
	}{
		{short: "false", ci: "", skip: "", failure: ""},
		{short: "false", ci: "true", skip: "", failure: ""},
		{short: "true", ci: "", skip: "needs incusd: left out of the fast run (-short, make unit)", failure: ""},
		{short: "true", ci: "true", skip: "", failure: "needs incusd, and -short leaves it out, but CI is set"},
	}
	was := flag.Lookup("test.short").Value.String()
	t.Cleanup(func() { _ = flag.Set("test.short", was) })
	for _, tc := range tests {
		t.Run("short="+tc.short+",CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			if err := flag.Set("test.short", tc.short); err != nil {
				t.Fatal(err)
			}
			r := &recorder{TB: t}
			Needs(r, "incusd")
			if (tc.skip == "") != (r.skipped == "") || !strings.Contains(r.skipped, tc.skip) {
				t.Errorf("skipped %q, want %q", r.skipped, tc.skip)
			}
			if (tc.failure == "") != (r.failed == "") || !strings.Contains(r.failed, tc.failure) {
				t.Errorf("failed %q, want %q", r.failed, tc.failure)
			}
		})
	}
}

func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		ci            string
		skip, failure string
	}{
		{ci: "", skip: "no nix on PATH"},
		{ci: "true", failure: "no nix on PATH (CI is set"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			Missing(r, "no nix on %s", "PATH")
			if r.skipped != "" && tc.skip == "" || !strings.Contains(r.skipped, tc.skip) {
				t.Errorf("skipped %q, want %q", r.skipped, tc.skip)
			}
			if r.failed != "" && tc.failure == "" || !strings.Contains(r.failed, tc.failure) {
				t.Errorf("failed %q, want %q", r.failed, tc.failure)
			}
		})
	}
}
