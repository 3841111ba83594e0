package itest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// ReportEnv names the file Report appends to; make test sets it and
// prints the file after the tests, so that figures a passing test
// measured (recovery times, spreads) show in make check's output, which
// go test keeps quiet for a passing package.
const ReportEnv = "JERICHOCI_TEST_REPORT"

var reportMu sync.Mutex

// Report logs a figure of the test (t.Logf) and appends it, with the
// test's name, to the file $JERICHOCI_TEST_REPORT when that is set. A
// file that cannot be written fails the test: a figure asked for must
// not go missing silently.
func Report(t testing.TB, format string, a ...any) {
	t.Helper()
	line := fmt.Sprintf(format, a...)
	t.Logf("%s", line)
	path := os.Getenv(ReportEnv)
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("report to %s: %v", path, err)
		return
	}
	if _, err := fmt.Fprintf(f, "%s: %s\n", t.Name(), line); err != nil {
		t.Errorf("report to %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("report to %s: %v", path, err)
	}
}
