package model

import "testing"

func TestSnapshotSkips(t *testing.T) {
	for _, tc := range []struct {
		name              string
		root, nested, any bool
	}{
		{".git", true, true, true},
		{"target", true, true, true},
		{"build", false, true, false},
		{"node_modules", false, true, false},
		{"src", false, false, false},
		{SnapshotMetadataFile, false, false, false}, // the copier's to leave out, at the root
	} {
		if got := SnapshotSkips(tc.name, true); got != tc.root {
			t.Errorf("SnapshotSkips(%q, root) = %v, want %v", tc.name, got, tc.root)
		}
		if got := SnapshotSkips(tc.name, false); got != tc.nested {
			t.Errorf("SnapshotSkips(%q, nested) = %v, want %v", tc.name, got, tc.nested)
		}
		if got := SnapshotSkipsAnywhere(tc.name); got != tc.any {
			t.Errorf("SnapshotSkipsAnywhere(%q) = %v, want %v", tc.name, got, tc.any)
		}
	}
}
