package executor

import (
	"strings"
	"testing"
)

// The size grammar is units.ParseSize's (its table test); this checks
// what the root disk adds: empty is allowed, zero is not, errors name it.
func TestConfigValidateRootDiskSize(t *testing.T) {
	tests := []struct {
		size    string
		wantErr string
	}{
		{size: "20GiB"}, {size: "10GB"}, {size: "1073741824"}, {size: ""},
		{size: "20 GiB", wantErr: `root disk size: "20 GiB" is not a size`},
		{size: "0", wantErr: `root disk size: size "0" is not positive`},
		{size: "0GiB", wantErr: `root disk size: size "0GiB" is not positive`},
		{size: "9000000000EiB", wantErr: `root disk size: size "9000000000EiB" is too large`},
	}
	for _, tc := range tests {
		t.Run(tc.size, func(t *testing.T) {
			c := DefaultConfig()
			c.RootDiskSize = tc.size
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	err := Config{RunnerPath: "relative", InstanceType: "vm"}.Validate()
	for _, w := range []string{"runtime spec field `project` must be non-empty", "`profile` must be non-empty", "must be absolute", `instance type "vm"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want %q", err, w)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}
