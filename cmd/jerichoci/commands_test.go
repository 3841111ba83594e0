package main

import (
	"strings"
	"testing"
)

// TestCommandTable: the table is sorted by name (help lists it as is), no
// name is there twice, and help shows every command.
func TestCommandTable(t *testing.T) {
	cmds := commandTable()
	help, _, code := runCLI(t, "help")
	if code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	for i, cmd := range cmds {
		if i > 0 && cmds[i-1].name >= cmd.name {
			t.Errorf("%q comes after %q: the table must be sorted, without repeats", cmd.name, cmds[i-1].name)
		}
		if cmd.summary == "" || cmd.run == nil {
			t.Errorf("%q has no summary or no run", cmd.name)
		}
		if !strings.Contains(help, "\n  "+cmd.name+" ") {
			t.Errorf("help lacks %q:\n%s", cmd.name, help)
		}
		if got, ok := lookupCommand(cmd.name); !ok || got.name != cmd.name {
			t.Errorf("lookupCommand(%q) = %q, %v", cmd.name, got.name, ok)
		}
	}
	if _, ok := lookupCommand("nope"); ok {
		t.Error("lookupCommand found a command that is not in the table")
	}
}
