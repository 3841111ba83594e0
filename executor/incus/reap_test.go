package incus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"jerichoci/executor"
)

// TestReapLocalOrphans leaves instances as `jerichoci run` processes of
// this host would, and deletes only the one whose process is gone.
func TestReapLocalOrphans(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	// Pid 1 stands for the dead process: it really lives, so a `jerichoci
	// run` on this host meanwhile (the cmd/jerichoci tests) leaves these
	// instances alone. This process's own pid is never reaped, whatever
	// alive says.
	const dead = 1
	alive := func(pid int) bool { return pid != dead && pid != os.Getpid() }
	owner := func(pid int) string { return fmt.Sprintf("%s-%d", host, pid) }
	orphan := launch(t, c, false, map[string]string{executor.ConfigOwner: owner(dead), executor.ConfigRunID: "r-dead", executor.ConfigJobID: "j"})
	keep := map[string]string{} // name: whose
	for what, config := range map[string]map[string]string{
		"a live process's":     {executor.ConfigOwner: owner(os.Getppid()), executor.ConfigRunID: "r-live"},
		"this process's":       {executor.ConfigOwner: owner(os.Getpid()), executor.ConfigRunID: "r-self"},
		"one without a run id": {executor.ConfigOwner: owner(dead)},
		"another host's":       {executor.ConfigOwner: "x" + owner(dead), executor.ConfigRunID: "r-other"},
		"the daemon's":         {executor.ConfigOwner: "jerichoci-serve/k/" + owner(dead), executor.ConfigRunID: "r-daemon"},
		"one without our keys": {"user.other.owner": owner(dead), "user.other.run_id": "r"},
	} {
		keep[launch(t, c, false, config)] = what
	}

	var out bytes.Buffer
	ReapLocalOrphans(t.Context(), c, alive, &out, zap.NewNop())
	want := fmt.Sprintf("jerichoci: deleted instance %s left by an earlier run (r-dead, job j) whose process %d is gone\n", orphan, dead)
	if out.String() != want {
		t.Errorf("out = %q, want %q", out.String(), want)
	}
	if _, err := c.GetInstance(t.Context(), orphan); !IsNotFound(err) {
		t.Errorf("orphan %s still there (err %v)", orphan, err)
	}
	for name, what := range keep {
		if _, err := c.GetInstance(t.Context(), name); err != nil {
			t.Errorf("%s instance %s was touched: %v", what, name, err)
		}
	}
}

// TestReapLocalOrphansUnreachable logs that the list failed, and no more.
func TestReapLocalOrphansUnreachable(t *testing.T) {
	c, err := NewUnix(filepath.Join(t.TempDir(), "no.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	core, logs := observer.New(zap.DebugLevel)
	var out bytes.Buffer
	ReapLocalOrphans(t.Context(), c, func(int) bool { t.Error("alive called"); return true }, &out, zap.New(core))
	if out.Len() != 0 || logs.Len() != 1 || logs.All()[0].Message != "list instances for orphans" {
		t.Fatalf("out %q, logs %v; want one warning", out.String(), logs.All())
	}
}
