package procid

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeRoot is a /proc and /etc with one boot and the given processes
// (pid -> start ticks).
func fakeRoot(t *testing.T, machine, boot string, procs map[int]uint64) Host {
	t.Helper()
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/machine-id", machine+"\n")
	write("proc/sys/kernel/random/boot_id", boot+"\n")
	if err := os.MkdirAll(filepath.Join(root, "proc/self/ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("pid:[4026531836]", filepath.Join(root, "proc/self/ns/pid")); err != nil {
		t.Fatal(err)
	}
	for pid, start := range procs {
		// A command with spaces and a ')' of its own, as /proc shows it.
		write(filepath.Join("proc", itoa(pid), "stat"),
			itoa(pid)+" (jerichoci (x) y) S 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 9 0 "+utoa(start)+" 123 456\n")
	}
	return Host{Root: root}
}

func TestGone(t *testing.T) {
	h := fakeRoot(t, "m1", "b1", map[int]uint64{100: 5000})
	for _, tc := range []struct {
		name   string
		id     string
		gone   bool
		local  bool
		parsed bool
	}{
		{"live process", "m1-4026531836/b1/100/5000", false, true, true},
		{"pid recycled: another start time", "m1-4026531836/b1/100/4999", true, true, true},
		{"no such pid", "m1-4026531836/b1/101/5000", true, true, true},
		{"earlier boot", "m1-4026531836/b0/100/5000", true, true, true},
		{"another host: never gone here", "m2-4026531836/b1/101/5000", false, false, true},
		{"another PID namespace of this machine: another host", "m1-4026531999/b1/101/5000", false, false, true},
		{"malformed: never gone", "m1-4026531836/b1/x/5000", false, false, false},
		{"old owner form: never gone", "host-100", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.Gone(tc.id); got != tc.gone {
				t.Errorf("Gone(%q) = %v, want %v", tc.id, got, tc.gone)
			}
			if got := h.Local(tc.id); got != tc.local {
				t.Errorf("Local(%q) = %v, want %v", tc.id, got, tc.local)
			}
			if _, err := Parse(tc.id); (err == nil) != tc.parsed {
				t.Errorf("Parse(%q) error %v, want parsed %v", tc.id, err, tc.parsed)
			}
		})
	}
}

func TestOfRoundTrip(t *testing.T) {
	h := fakeRoot(t, "m1", "b1", map[int]uint64{7: 42})
	id, err := h.Of(7)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ID{Host: "m1-4026531836", Boot: "b1", PID: 7, Start: 42}); id != want {
		t.Fatalf("Of(7) = %+v, want %+v", id, want)
	}
	back, err := Parse(id.String())
	if err != nil || back != id {
		t.Fatalf("Parse(%q) = %+v, %v; want %+v", id.String(), back, err, id)
	}
}

// TestSelf: the real /proc names this process, alive.
func TestSelf(t *testing.T) {
	id, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if id.PID != os.Getpid() || id.Start == 0 {
		t.Fatalf("Self() = %+v", id)
	}
	if (Host{}).Gone(id.String()) {
		t.Fatalf("this process %s is gone", id)
	}
}

func itoa(i int) string    { return strconv.Itoa(i) }
func utoa(u uint64) string { return strconv.FormatUint(u, 10) }
