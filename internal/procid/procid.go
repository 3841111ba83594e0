// Package procid names a process so that its death can be proved later: the
// host (machine id and PID namespace), the boot (kernel boot id), the pid and the process's
// start time since boot (clock ticks, /proc/PID/stat field 22). A pid alone
// is recycled; a pid with its start time on the same boot of the same host
// is not. It is a leaf: the standard library only, Linux /proc.
package procid

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ID is one process of one boot of one host.
type ID struct {
	// Host is /etc/machine-id (else the hostname) and the inode of the
	// PID namespace, "MACHINE-NS": a process of another PID namespace
	// (a container sharing the machine id) is another host's, whose pids
	// this one cannot see.
	Host  string
	Boot  string // /proc/sys/kernel/random/boot_id
	PID   int
	Start uint64 // clock ticks after boot
}

// String is the form stored in instance config: HOST/BOOT/PID/START.
func (id ID) String() string {
	return fmt.Sprintf("%s/%s/%d/%d", id.Host, id.Boot, id.PID, id.Start)
}

// Parse reads String's form.
func Parse(s string) (ID, error) {
	f := strings.Split(s, "/")
	if len(f) != 4 || f[0] == "" || f[1] == "" {
		return ID{}, fmt.Errorf("process id %q: expected HOST/BOOT/PID/START", s)
	}
	pid, err := strconv.Atoi(f[2])
	if err != nil || pid <= 0 {
		return ID{}, fmt.Errorf("process id %q: pid %q is not a positive number", s, f[2])
	}
	start, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return ID{}, fmt.Errorf("process id %q: start %q is not a number", s, f[3])
	}
	return ID{Host: f[0], Boot: f[1], PID: pid, Start: start}, nil
}

// Host is this machine, read from /proc and /etc (a test gives a root of
// its own).
type Host struct {
	// Root prefixes /proc and /etc ("" is the real one).
	Root string
}

// Self names this process.
func Self() (ID, error) { return Host{}.Of(os.Getpid()) }

// Of names the running process pid of this host.
func (h Host) Of(pid int) (ID, error) {
	host, boot, err := h.machine()
	if err != nil {
		return ID{}, err
	}
	start, err := h.start(pid)
	if err != nil {
		return ID{}, err
	}
	return ID{Host: host, Boot: boot, PID: pid, Start: start}, nil
}

// Gone reports whether the process s names is provably gone: it ran on
// this host and either on an earlier boot or no process of its pid with
// its start time exists now. A process of another host, an unreadable
// name or an unreadable /proc is never gone: only its host can tell.
func (h Host) Gone(s string) bool {
	id, err := Parse(s)
	if err != nil {
		return false
	}
	host, boot, err := h.machine()
	if err != nil || id.Host != host {
		return false
	}
	if id.Boot != boot {
		return true
	}
	start, err := h.start(id.PID)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && start != id.Start
}

// Local reports whether s names a process of this host (dead or alive).
func (h Host) Local(s string) bool {
	id, err := Parse(s)
	if err != nil {
		return false
	}
	host, _, err := h.machine()
	return err == nil && id.Host == host
}

func (h Host) machine() (host, boot string, err error) {
	b, err := os.ReadFile(h.Root + "/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", "", fmt.Errorf("boot id: %w", err)
	}
	boot = strings.TrimSpace(string(b))
	if m, err := os.ReadFile(h.Root + "/etc/machine-id"); err == nil && strings.TrimSpace(string(m)) != "" {
		host = strings.TrimSpace(string(m))
	} else if host, err = os.Hostname(); err != nil {
		return "", "", fmt.Errorf("host id: no /etc/machine-id and no hostname: %w", err)
	}
	ns, err := os.Readlink(h.Root + "/proc/self/ns/pid") // "pid:[4026531836]"
	if err != nil {
		return "", "", fmt.Errorf("pid namespace: %w", err)
	}
	host += "-" + strings.TrimSuffix(strings.TrimPrefix(ns, "pid:["), "]")
	if strings.Contains(host, "/") || strings.Contains(boot, "/") || host == "" || boot == "" {
		return "", "", fmt.Errorf("host id %q or boot id %q: empty or holds '/'", host, boot)
	}
	return host, boot, nil
}

// start is the start time of pid (field 22 of /proc/PID/stat, counted
// after the command's closing parenthesis, which may itself hold spaces).
func (h Host) start(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/proc/%d/stat", h.Root, pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command, expected at least 20", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
}
