package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/model"
	"jerichoci/targets"
)

const mineCatalog = `{"schema_version": 1, %s"targets": [{"id": "mine-target", "lane": "mine", "trigger": "branch",
 "jobs": [{"id": "job", "timeout_secs": 60, "command": {"kind": "shell", "command": "echo mine"},
 "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}]}`

func TestJobCatalog(t *testing.T) {
	d := &Daemon{Catalog: targets.Builtin()}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // writes the source's catalog file
		lane  string                         // a lane the job's catalog must have
		id    string                         // a target id it must have; "" none
		noID  string                         // a target id it must not have
		err   string                         // substring of the error; "" none
	}{
		{name: "no file: the daemon's catalog", id: "pre-merge-pika-rust"},
		{name: "merged over the daemon's", setup: writeSourceCatalog(strings.Replace(mineCatalog, "%s", "", 1)), lane: "mine", id: "pre-merge-pika-rust"},
		{name: "alone with include_builtin false", setup: writeSourceCatalog(strings.Replace(mineCatalog, "%s", `"include_builtin": false, `, 1)),
			lane: "mine", noID: "pre-merge-pika-rust"},
		{name: "the catalog's own errors", setup: writeSourceCatalog(`{"schema_version": 2, "targets": []}`),
			err: "jerichoci.lanes.json: field `schema_version`: must be 1, got 2"},
		{name: "a lane title the daemon's catalog uses", setup: writeSourceCatalog(strings.Replace(strings.Replace(mineCatalog, "%s", "", 1), `"lane": "mine"`, `"lane": "check-pika-rust"`, 1)),
			err: "lane title \"check-pika-rust\" is already used"},
		{name: "a link is refused", setup: func(t *testing.T, dir string) {
			target := filepath.Join(t.TempDir(), "elsewhere.json")
			if err := os.WriteFile(target, []byte(strings.Replace(mineCatalog, "%s", "", 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, targets.DefaultFile)); err != nil {
				t.Fatal(err)
			}
		}, err: "the source's jerichoci.lanes.json: not a regular file"},
		{name: "too large", setup: writeSourceCatalog(`{"schema_version": 1, "about": "` + strings.Repeat("x", maxSourceCatalogBytes) + `", "targets": []}`),
			err: "more than the 4194304 a catalog file may have"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			cat, err := d.jobCatalog(dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.lane != "" {
				if _, err := cat.LookupLane(tc.lane); err != nil {
					t.Errorf("lane %s: %v", tc.lane, err)
				}
			}
			if tc.id != "" {
				if _, err := cat.Lookup(tc.id); err != nil {
					t.Errorf("target %s: %v", tc.id, err)
				}
			}
			if tc.noID != "" {
				if _, err := cat.Lookup(tc.noID); err == nil {
					t.Errorf("target %s is there, want it absent", tc.noID)
				}
			}
		})
	}
}

func writeSourceCatalog(content string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		if err := os.WriteFile(filepath.Join(dir, targets.DefaultFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestResolveInSource(t *testing.T) {
	d := &Daemon{Catalog: targets.Builtin()}
	withMine := t.TempDir()
	writeSourceCatalog(strings.Replace(mineCatalog, "%s", "", 1))(t, withMine)
	without := t.TempDir()
	tests := []struct {
		name, dir string
		spec      model.JobSpec
		target    string // the resolved target; "" an error
		err       string
	}{
		{"the source's lane", withMine, model.JobSpec{Lane: "mine"}, "mine-target", ""},
		{"a daemon target beside it", withMine, model.JobSpec{Target: "pre-merge-pika-rust"}, "pre-merge-pika-rust", ""},
		{"unknown to both", without, model.JobSpec{Lane: "mine"}, "", "unknown job `mine`"},
		{"a typo", withMine, model.JobSpec{Lane: "mien"}, "", "unknown job `mien`; did you mean `mine`?"},
		{"a target id sent as a lane", withMine, model.JobSpec{Lane: "mine-target"}, "", "send it as `target`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &attempt{d: d, spec: &tc.spec}
			if err := d.admit(a, tc.spec); err != nil {
				t.Fatalf("admit: %v", err)
			}
			err := a.resolveInSource(tc.dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || a.target != nil {
					t.Fatalf("error %v, target %v; want an error containing %q and no target", err, a.target, tc.err)
				}
				return
			}
			if err != nil || a.target == nil || a.target.ID != tc.target {
				t.Fatalf("= %v, %v; want target %s", a.target, err, tc.target)
			}
		})
	}
}
