package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/run/protocol"
	"jerichoci/targets"
)

type stubCatalog struct {
	rep protocol.CatalogReply
	err error
}

func (s stubCatalog) Catalog(context.Context) (protocol.CatalogReply, error) { return s.rep, s.err }

func TestEnqueueNameAsksTheDaemonAndSuggests(t *testing.T) {
	daemon := stubCatalog{rep: protocol.CatalogReply{Daemon: "d1", Catalog: "built-in + jerichoci.lanes.json", Targets: []protocol.CatalogEntry{
		{ID: "demo-pass", Jobs: 1}, {ID: "demo-lane-target", Lane: "check-demo", Trigger: "branch", Jobs: 1},
	}}}
	tests := []struct {
		name    string
		daemon  catalogAsker
		arg     string
		lane    bool
		wantErr []string // substrings; none: no error
	}{
		{"a built-in target", daemon, "pre-merge-pika-rust", false, nil},
		{"a built-in lane", daemon, "check-pika-rust", true, nil},
		{"a target only the daemon knows", daemon, "demo-pass", false, nil},
		{"a lane only the daemon knows", daemon, "check-demo", true, nil},
		{"a typo of the daemon's target", daemon, "demo-pas", false,
			[]string{"unknown lane or target `demo-pas`", "daemon d1", "did you mean `demo-pass`?"}},
		{"a typo of a built-in lane", daemon, "check-pika-rsut", false, []string{"did you mean `check-pika-rust`?"}},
		{"nothing close", daemon, "nope", false, []string{"unknown lane or target `nope`"}},
		{"no daemon to ask", stubCatalog{err: protocol.ErrNoDaemon}, "demo-pass", false,
			[]string{"unknown lane or target `demo-pass` in the local catalog (built-in)", "no daemon answers"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lane, err := enqueueName(context.Background(), targets.Builtin(), tc.daemon, tc.arg)
			if len(tc.wantErr) == 0 {
				if err != nil || lane != tc.lane {
					t.Fatalf("= %t, %v; want %t, nil", lane, err, tc.lane)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want one containing %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "did you mean") && len(tc.wantErr) == 1 && !strings.Contains(tc.wantErr[0], "did you mean") {
				t.Errorf("error %q suggests something; want no suggestion", err)
			}
		})
	}
}

func TestSourceCatalogIsTheSourcesFile(t *testing.T) {
	src := t.TempDir()
	c := &cli{env: func(string) (string, bool) { return "", false }}
	cat, err := c.sourceCatalog("", src)
	if err != nil || cat.Name() != targets.BuiltinSource {
		t.Fatalf("without a file: %v, %v; want the built-in catalog", cat, err)
	}
	file := `{"schema_version":1,"targets":[{"id":"mine","lane":"mine","trigger":"branch","jobs":[{"id":"echo","timeout_secs":60,` +
		`"command":{"kind":"shell","command":"echo hi"},"runtime":{"kind":"incus","incus":{"guest_role":"pikaci-runner"}}}]}]}`
	if err := os.WriteFile(filepath.Join(src, targets.DefaultFile), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err = c.sourceCatalog("", src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.LookupLane("mine"); err != nil {
		t.Errorf("the source's lane: %v", err)
	}
	if _, err := cat.Lookup("pre-merge-pika-rust"); err != nil {
		t.Errorf("merged over the built-in catalog: %v", err)
	}
	if err := os.WriteFile(filepath.Join(src, targets.DefaultFile), []byte(`{"schema_version":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var fe *targets.FieldError
	if _, err := c.sourceCatalog("", src); !errors.As(err, &fe) || !strings.Contains(err.Error(), "schema_version") {
		t.Errorf("a bad file: %v; want its field errors", err)
	}
}
