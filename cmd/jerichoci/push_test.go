package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
)

// TestEnqueuePush: several lanes, or --changed paths, queue one job per
// lane that share one group naming every lane; the push's number printed
// is the work stream's sequence of its first job. Bad combinations are
// usage errors.
func TestEnqueuePush(t *testing.T) {
	env, q, _ := embeddedQueue(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		lanes []string
		paths []string // the specs' changed_files, when the test names them
	}{
		{"lanes", []string{"enqueue", "demo-pass", "demo-fail", "demo-timeout", "--group", "push-test-1"},
			[]string{"demo-pass", "demo-fail", "demo-timeout"}, nil},
		{"changed", []string{"enqueue", "--changed", "crates/rmp-cli/src/main.rs", "pikachat-openclaw/x.ts"},
			[]string{"check-pikachat", "check-rmp"}, []string{"crates/rmp-cli/src/main.rs", "pikachat-openclaw/x.ts"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--source", src, "--host-path", "--catalog", "../../jerichoci.lanes.json")
			stdout, stderr, code := runCLIEnv(t, env, args...)
			if code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != len(tc.lanes)+1 {
				t.Fatalf("stdout:\n%s\nwant a push line and %d job lines", stdout, len(tc.lanes))
			}
			var group string
			for i, lane := range tc.lanes {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				next, err := q.Next(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				m := next.(jetstream.Msg)
				spec, err := model.ParseJobSpec(m.Data())
				if err != nil {
					t.Fatal(err)
				}
				if spec.Group == nil || !reflect.DeepEqual(spec.Group.Lanes, tc.lanes) || spec.Name() != lane {
					t.Fatalf("job %d: %s with group %+v; want %s in a group of %v", i, spec.Name(), spec.Group, lane, tc.lanes)
				}
				if tc.paths != nil && !reflect.DeepEqual(spec.ChangedFiles, tc.paths) {
					t.Errorf("job %d: changed_files %v, want %v", i, spec.ChangedFiles, tc.paths)
				}
				if i == 0 {
					group = spec.Group.ID
					meta, err := m.Metadata()
					if err != nil {
						t.Fatal(err)
					}
					if want := fmt.Sprintf("push #%d %s: %d lane(s)", meta.Sequence.Stream, group, len(tc.lanes)); lines[0] != want {
						t.Errorf("push line %q, want %q", lines[0], want)
					}
				} else if spec.Group.ID != group {
					t.Errorf("job %d: group %q, want the first job's %q", i, spec.Group.ID, group)
				}
				if want := spec.JobID.String() + " " + lane; lines[i+1] != want {
					t.Errorf("line %d = %q, want %q", i+1, lines[i+1], want)
				}
				_ = m.Ack()
			}
		})
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"enqueue", "demo-pass", "demo-fail", "--wait"}, "--wait follows one job"},
		{[]string{"enqueue", "demo-pass", "demo-fail", "--group", "../x"}, `--group "../x": expected`},
	} {
		_, stderr, code := runCLIEnv(t, env, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
