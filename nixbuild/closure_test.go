package nixbuild

import (
	"bytes"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClosure(t *testing.T) { eachNix(t, closureOfRealized) }

func closureOfRealized(t *testing.T, b *Builder) {
	dir := fixture(t, "closure test "+t.Name()+" "+strconv.FormatInt(time.Now().UnixNano(), 10))
	var log bytes.Buffer
	build, err := b.Realize(t.Context(), "path:"+dir+"#ci.x86_64-linux.pikaFollowupWorkspaceBuild", &log)
	if err != nil {
		t.Fatalf("realize: %v\n%s", err, log.String())
	}
	deps, err := b.Realize(t.Context(), "path:"+dir+"#ci.x86_64-linux.pikaFollowupWorkspaceDeps", &log)
	if err != nil || !deps.Reused {
		t.Fatalf("realize deps = %+v, %v\n%s", deps, err, log.String())
	}
	log.Reset()
	// The build output's wrappers name the deps output: both are its closure.
	got, err := b.Closure(t.Context(), []string{build.Path}, &log)
	if want := []string{build.Path, deps.Path}; err != nil || !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("Closure(build) = %q, %v; want %q", got, err, want)
	}
	if !strings.Contains(log.String(), "path-info --store daemon --option accept-flake-config false --recursive -- "+build.Path) {
		t.Errorf("log lacks the command:\n%s", log.String())
	}
	got, err = b.Closure(t.Context(), []string{deps.Path, build.Path, deps.Path}, &log)
	if err != nil || len(got) != 2 {
		t.Errorf("Closure(deps, build, deps) = %q, %v; want the two paths once", got, err)
	}
	if got, err := b.Closure(t.Context(), nil, &log); got != nil || err != nil {
		t.Errorf("Closure(nil) = %q, %v", got, err)
	}
	missing := filepath.Join(filepath.Dir(build.Path), strings.Repeat("0", 32)+"-missing")
	if _, err := b.Closure(t.Context(), []string{missing}, &log); err == nil || !strings.Contains(err.Error(), "closure of "+missing+": nix path-info exited") {
		t.Errorf("Closure(missing) error = %v", err)
	}
}

func TestClosureLines(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "/nix/store/b-x\n/nix/store/a-y\n/nix/store/b-x\n", want: "/nix/store/a-y /nix/store/b-x"},
		{in: "\n/nix/store/a-y\n\n", want: "/nix/store/a-y"},
		{in: "", wantErr: "nix path-info printed no store path"},
		{in: "warning: something\n/nix/store/a-y\n", wantErr: `nix path-info printed "warning: something", which is not an absolute store path`},
	} {
		got, err := closureLines([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("closureLines(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("closureLines(%q) = %q, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
