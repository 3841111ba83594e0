package itest

import (
	"os"
	"path/filepath"
	"testing"
)

// Report appends the test's name and the line to $JERICHOCI_TEST_REPORT,
// and writes nothing anywhere when it is unset.
func TestReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.txt")
	t.Setenv(ReportEnv, path)
	Report(t, "recovery %.1fs", 1.25)
	Report(t, "second %d", 2)
	b, err := os.ReadFile(path)
	if want := "TestReport: recovery 1.2s\nTestReport: second 2\n"; err != nil || string(b) != want {
		t.Errorf("report file %q, %v; want %q", b, err, want)
	}
	t.Setenv(ReportEnv, "")
	Report(t, "not written")
	if b2, _ := os.ReadFile(path); string(b2) != string(b) {
		t.Errorf("report with the variable unset changed the file: %q", b2)
	}
}
