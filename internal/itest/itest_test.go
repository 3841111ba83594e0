package itest

import (
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestLiveWithMarker(t *testing.T) {
	marker := "3000." + strconv.FormatInt(time.Now().UnixNano()%1e9, 10) // sleep takes fractions
	cmd := exec.Command("sleep", marker)
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	pid := cmd.Process.Pid
	if got := LiveWithMarker(t, marker); !slices.Equal(got, []int{pid}) {
		t.Errorf("with the process running: %v, want [%d]", got, pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if got := LiveWithMarker(t, marker); len(got) != 0 {
		t.Errorf("after it ended: %v, want none", got)
	}
}
