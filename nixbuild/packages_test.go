package nixbuild

import (
	"strings"
	"testing"
)

// TestAttrNames decodes `nix eval --json … --apply builtins.attrNames` as
// Nix 2.8 and later print it (no trailing newline), sorted.
func TestAttrNames(t *testing.T) {
	tests := []struct {
		out  string
		want string // joined by spaces
		err  string
	}{
		{out: `["pikaci-runner-incus-image","pikaci-incus-dev-image"]`, want: "pikaci-incus-dev-image pikaci-runner-incus-image"},
		{out: `[]`, want: ""},
		{out: `{"pikaci-runner-incus-image":null}`, err: "want a JSON array of attribute names"},
		{out: ``, err: "want a JSON array of attribute names"},
	}
	for _, tc := range tests {
		got, err := attrNames([]byte(tc.out))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("attrNames(%q) error = %v, want %q", tc.out, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("attrNames(%q) = %q, %v; want %q", tc.out, got, err, tc.want)
		}
	}
}
