// Package testlock serializes the test packages that share the local
// incusd: each package whose tests use incusd holds a shared lock on one
// well-known file for its whole run (in its TestMain), and a test that
// breaks incusd on purpose (test/incusfault, which kills it) holds the
// exclusive lock, so it never runs while another package talks to incusd.
//
// The lock is flock(2) on Path(): it belongs to the open file, so it ends
// with the process whatever happens (kill -9 included), and it is not
// inherited by a child (the file is opened close-on-exec), so an incusd
// started by a test does not keep it.
package testlock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultPath is the lock file of the local incusd: one per host, like the
// incusd it guards (not under $TMPDIR, which may differ between packages).
const DefaultPath = "/tmp/jerichoci-incusd.lock"

// EnvPath overrides DefaultPath.
const EnvPath = "JERICHOCI_INCUSD_LOCK"

// DefaultWait bounds how long MustShared waits for an exclusive holder.
const DefaultWait = 30 * time.Minute

// Path is the lock file: $JERICHOCI_INCUSD_LOCK, else DefaultPath.
func Path() string {
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	return DefaultPath
}

// Mode is a lock mode.
type Mode int

const (
	// Shared: any number of holders at once; none while an exclusive one holds it.
	Shared Mode = syscall.LOCK_SH
	// Exclusive: one holder and no shared one.
	Exclusive Mode = syscall.LOCK_EX
)

func (m Mode) String() string {
	if m == Exclusive {
		return "exclusive"
	}
	return "shared"
}

// Lock is a held lock.
type Lock struct {
	f *os.File
	// Waited is how long taking it took.
	Waited time.Duration
}

// Release gives the lock up; a second call does nothing.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

// ErrTimeout is wrapped when the lock was not free within the wait.
var ErrTimeout = errors.New("lock not free in time")

// Acquire takes the lock on path in mode, polling every 100 ms for at most
// wait (0: one try). The file is created (mode 0666) when missing. A
// timeout error wraps ErrTimeout and names the processes holding the lock.
func Acquire(path string, mode Mode, wait time.Duration) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.Open(path) // another user's file: flock needs no write access
	}
	if err != nil {
		return nil, fmt.Errorf("open the incusd test lock: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != 0o666 {
		_ = f.Chmod(0o666) // let every user share it, whatever the umask; best effort
	}
	start := time.Now()
	deadline := start.Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), int(mode)|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f: f, Waited: time.Since(start)}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("flock %s (%s): %w", path, mode, err)
		}
		if !time.Now().Before(deadline) {
			holders := Holders(f)
			_ = f.Close()
			return nil, fmt.Errorf("%s lock on %s: %w after %s (held by %s)", mode, path, ErrTimeout,
				wait.Round(time.Second), describe(holders))
		}
		time.Sleep(min(100*time.Millisecond, time.Until(deadline)+time.Millisecond))
	}
}

// MustShared takes the shared lock on Path() for a TestMain, waiting up
// to DefaultWait for a fault test that holds it exclusively; it says so on
// stderr when it had to wait. It exits the process (code 2) when the lock
// cannot be taken: running anyway could race a test that kills incusd.
func MustShared() *Lock {
	l, err := Acquire(Path(), Shared, DefaultWait)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the incusd test lock: %v\n", err)
		os.Exit(2)
	}
	if l.Waited > time.Second {
		fmt.Fprintf(os.Stderr, "testlock: waited %s for the shared incusd lock %s\n", l.Waited.Round(time.Second), Path())
	}
	return l
}

// Holder is a process holding a lock on the file, from /proc/locks.
type Holder struct {
	PID  int
	Kind string // READ (shared) or WRITE (exclusive)
	Cmd  string // its command line, "" when unreadable
}

// Holders lists the flock holders of f's file (by device and inode); nil
// when /proc/locks cannot be read.
func Holders(f *os.File) []Holder {
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	pl, err := os.Open("/proc/locks")
	if err != nil {
		return nil
	}
	defer pl.Close()
	// /proc/locks: "1: FLOCK  ADVISORY  READ  1234 fd:01:5678 0 EOF";
	// a waiter's line has "->" after the number.
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	var out []Holder
	sc := bufio.NewScanner(pl)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[4] == "" {
			continue
		}
		kind, pidText, file := fields[3], fields[4], fields[5]
		if !strings.EqualFold(file, want) {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, Holder{PID: pid, Kind: kind, Cmd: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))})
	}
	return out
}

func describe(hs []Holder) string {
	if len(hs) == 0 {
		return "processes /proc/locks does not name"
	}
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = fmt.Sprintf("pid %d (%s) %s", h.PID, h.Kind, h.Cmd)
	}
	return strings.Join(parts, "; ")
}
