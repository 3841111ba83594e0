package daemon

import (
	"errors"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	cfg := DefaultDaemonConfig()
	cfg.MaxDeliver, cfg.RetryDelay, cfg.MaxRetryDelay = 4, 10*time.Second, 25*time.Second
	cause := errors.New("incus: 500")
	tests := []struct {
		kind      outcomeKind
		delivered uint64
		want      decision
	}{
		{outcomeRan, 1, decision{action: actAck, final: true}},
		{outcomeRan, 4, decision{action: actAck, final: true}},
		{outcomeInvalid, 1, decision{action: actTerm, reason: "incus: 500", final: true, message: "incus: 500"}},
		{outcomeCancelled, 2, decision{action: actAck, final: true, message: "cancelled"}},
		{outcomeDuplicate, 3, decision{action: actAck}},
		{outcomeInvalidRepeat, 2, decision{action: actTerm, reason: "incus: 500"}},
		{outcomeInfra, 1, decision{action: actNak, delay: 10 * time.Second, release: true,
			message: "infrastructure error on delivery 1 of 4, the job goes back to the queue: incus: 500"}},
		{outcomeInfra, 2, decision{action: actNak, delay: 20 * time.Second, release: true,
			message: "infrastructure error on delivery 2 of 4, the job goes back to the queue: incus: 500"}},
		{outcomeInfra, 3, decision{action: actNak, delay: 25 * time.Second, release: true,
			message: "infrastructure error on delivery 3 of 4, the job goes back to the queue: incus: 500"}},
		{outcomeInfra, 4, decision{action: actAck, final: true, dead: true,
			message: "infrastructure error on the last delivery (4 of 4), giving up: incus: 500"}},
		{outcomeInterrupted, 1, decision{action: actNak, release: true,
			message: "interrupted: the daemon stopped while the job ran; the job goes back to the queue"}},
		{outcomeBusy, 1, decision{action: actNak}},
		{outcomeSuperseded, 1, decision{action: actNone, message: "superseded: another worker took the job over; this run is not the job's result"}},
		{outcomeExhausted, 4, decision{action: actAck, final: true, dead: true,
			message: "gave up: the job was delivered 4 times and no worker finished it (its last worker stopped answering)"}},
		{outcomeLostRace, 4, decision{action: actAck,
			message: "superseded: the job already has its final record; this run is not the job's result"}},
		{outcomeStoreFailed, 2, decision{action: actNak, delay: 20 * time.Second, release: true,
			message: "could not store the result, the job goes back to the queue: incus: 500"}},
	}
	rows := map[outcomeKind]bool{}
	for _, tc := range tests {
		rows[tc.kind] = true
	}
	for name, k := range declaredOutcomes(t) {
		if !rows[k] {
			t.Errorf("%s has no row in this table", name)
		}
	}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			if got := classify(tc.kind, cause, tc.delivered, cfg); got != tc.want {
				t.Errorf("classify(%s, delivery %d) = %+v, want %+v", tc.kind, tc.delivered, got, tc.want)
			}
		})
	}
}

// TestOutcomesAreNamed checks every outcomeKind constant declared in the
// package, wherever and with whatever value: each has a name of its own
// and a case in classify (which panics on a kind it does not know).
func TestOutcomesAreNamed(t *testing.T) {
	kinds := declaredOutcomes(t)
	for _, must := range []string{"outcomeRan", "outcomeExhausted"} {
		if _, ok := kinds[must]; !ok {
			t.Fatalf("the package's outcomeKind constants %v lack %s: the scan is broken", kinds, must)
		}
	}
	names := map[string]string{}
	for _, c := range slices.Sorted(maps.Keys(kinds)) {
		k := kinds[c]
		name := k.String()
		if name == "" {
			t.Errorf("%s (%d) has no name in outcomeNames", c, k)
		} else if other, dup := names[name]; dup {
			t.Errorf("%s and %s are both named %q", c, other, name)
		}
		names[name] = c
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("classify(%s) has no case for it: %v", c, r)
				}
			}()
			classify(k, errors.New("cause"), 1, DefaultDaemonConfig())
		}()
	}
}

// declaredOutcomes type-checks the package's non-test files (imports left
// out: the constants need none) and returns its constants of type
// outcomeKind by name.
func declaredOutcomes(t *testing.T) map[string]outcomeKind {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	noImports := importerFunc(func(path string) (*types.Package, error) { return nil, errors.New("not imported") })
	conf := types.Config{Importer: noImports, Error: func(error) {}}
	pkg, _ := conf.Check("jerichoci/run/daemon", fset, files, nil) // errors: the missing imports
	kinds := map[string]outcomeKind{}
	for _, name := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok {
			continue
		}
		if named, ok := c.Type().(*types.Named); !ok || named.Obj().Name() != "outcomeKind" {
			continue
		}
		v, exact := constant.Int64Val(c.Val())
		if !exact {
			t.Fatalf("%s = %s: not an int", name, c.Val())
		}
		kinds[name] = outcomeKind(v)
	}
	return kinds
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }
