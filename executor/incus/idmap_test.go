package incus

import "testing"

func TestRootIDs(t *testing.T) {
	const current = `[{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":1000000000},{"Isuid":false,"Isgid":true,"Hostid":1000000,"Nsid":0,"Maprange":1000000000}]`
	for _, tc := range []struct {
		name             string
		config, expanded map[string]string
		uid, gid         int
		fail             bool
	}{
		{"incusd 6.0's map", map[string]string{"volatile.idmap.current": current}, nil, 1000000, 1000000, false},
		{"before the first start", map[string]string{"volatile.idmap.current": "[]", "volatile.idmap.next": current}, nil, 1000000, 1000000, false},
		{"one entry for both", map[string]string{"volatile.idmap.current": `[{"Isuid":true,"Isgid":true,"Hostid":2000000,"Nsid":0,"Maprange":65536}]`}, nil, 2000000, 2000000, false},
		{"a map starting above 0", map[string]string{"volatile.idmap.current": `[{"Isuid":true,"Isgid":true,"Hostid":2000000,"Nsid":1,"Maprange":65536}]`}, nil, 0, 0, true},
		{"privileged", map[string]string{}, map[string]string{"security.privileged": "true"}, 0, 0, false},
		{"no map", map[string]string{}, nil, 0, 0, true},
		{"garbage", map[string]string{"volatile.idmap.current": "{"}, nil, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, gid, err := rootIDs(tc.config, tc.expanded)
			if (err != nil) != tc.fail || uid != tc.uid || gid != tc.gid {
				t.Fatalf("rootIDs = %d, %d, %v; want %d, %d, failing %v", uid, gid, err, tc.uid, tc.gid, tc.fail)
			}
		})
	}
}
