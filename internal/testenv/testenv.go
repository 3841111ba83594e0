// Package testenv decides the fate of a test that needs something of the
// host beyond Go: incusd and its runner images, a nats-server process, Nix,
// chromium, root, the host-jobs users. Only tests import it.
//
// `make check` (CI) runs every such test; a prerequisite that is missing
// fails the test when CI is set and skips it, saying why, elsewhere
// (Missing).
// `make unit` runs `go test -short`: the fast tests only, which need none
// of these. Needs leaves the others out of it, and a TestMain asks Short
// before it takes the incusd test lock (internal/testlock) or builds a
// binary. -short under CI is refused: CI runs everything.
package testenv

import (
	"flag"
	"os"
	"testing"
)

// CI reports whether CI is set: a missing prerequisite fails the test there.
func CI() bool { return os.Getenv("CI") != "" }

// Short reports whether this is the fast run (go test -short, make unit).
// A TestMain may ask it before m.Run: it parses the test flags if they are
// not yet.
func Short() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	return testing.Short()
}

// Needs leaves the test out of the fast run: under -short it skips, saying
// what the test needs, or fails when CI is set. what names the
// prerequisite, e.g. "incusd with the runner images (scripts/incus-up)".
func Needs(t testing.TB, what string) {
	t.Helper()
	if !Short() {
		return
	}
	if CI() {
		t.Fatalf("needs %s, and -short leaves it out, but CI is set: CI runs every test (make check, not make unit)", what)
		return
	}
	t.Skipf("needs %s: left out of the fast run (-short, make unit); make check runs it", what)
}

// Missing ends a test whose prerequisite this host lacks, saying why (the
// message, from format and a): it fails the test when CI is set (make check
// provides every prerequisite) and skips it elsewhere.
func Missing(t testing.TB, format string, a ...any) {
	t.Helper()
	if CI() {
		t.Fatalf(format+" (CI is set: make check provides this, so the test must run)", a...)
		return
	}
	t.Skipf(format, a...)
}
