package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"jerichoci/internal/backoff"
)

// Every host-local job of a daemon running as root runs as one
// unprivileged user. A process a job leaves behind (setsid, a double fork,
// nohup) escapes the kill of its process group and, left running, could
// read a later job's /proc/<pid>/environ or change its workspace: so when
// a job ends every process of that user is killed, before the next job of
// that user may start (docs/SECURITY.md, "Host-local jobs").

// reapRounds bounds killUser: a round kills every live process of the user
// it finds; a process that forks between the scan and the kill is found by
// the next round, and RLIMIT_NPROC (Isolation.MaxProcesses) bounds how
// many there can be.
const (
	reapRounds = 200
	reapPause  = 10 * time.Millisecond
)

// killUser sends SIGKILL to every live process whose real, effective,
// saved or filesystem uid is uid, again and again until a scan of /proc
// finds none, at most reapRounds times. It returns the number of distinct
// processes it signalled and, when processes were still alive after the
// last round, an error naming them. Zombies are dead (they run nothing)
// and are left to their parent. It refuses uid 0 and this process's own
// uids: it would kill the daemon and the host. The pause between rounds
// ends with ctx, and so does the reaping, with ctx's error: callers pass a
// ctx that outlives the job (context.WithoutCancel), since what a job left
// must die however the job ended.
func killUser(ctx context.Context, uid uint32) (int, error) {
	if uid == 0 || int(uid) == os.Getuid() || int(uid) == os.Geteuid() {
		return 0, fmt.Errorf("refusing to kill every process of uid %d: it is root or this daemon's own user", uid)
	}
	signalled := map[int]bool{}
	for round := 0; round < reapRounds; round++ {
		pids, err := userProcesses(uid)
		if err != nil {
			return len(signalled), err
		}
		if len(pids) == 0 {
			return len(signalled), nil
		}
		for _, pid := range pids {
			// ESRCH: it died since the scan.
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				signalled[pid] = true
			}
		}
		if err := backoff.Sleep(ctx, reapPause); err != nil {
			return len(signalled), fmt.Errorf("kill the processes of uid %d: %w", uid, err)
		}
	}
	pids, err := userProcesses(uid)
	if err != nil || len(pids) == 0 {
		return len(signalled), err
	}
	return len(signalled), fmt.Errorf("%d process(es) of uid %d still alive after %d rounds of SIGKILL: pids %v", len(pids), uid, reapRounds, pids)
}

// userProcesses lists the live processes (not zombies, not dead) of uid by
// scanning /proc: any of the four uids of a process's status counts, so
// a setuid program the user started counts too.
func userProcesses(uid uint32) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				continue // it exited since the listing
			}
			return nil, fmt.Errorf("read /proc/%d/status: %w", pid, err)
		}
		if st, ok := parseStatus(string(b)); ok && st.live && slices.Contains(st.uids[:], uid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// procStatus is what killUser reads of /proc/<pid>/status.
type procStatus struct {
	uids [4]uint32 // real, effective, saved, filesystem
	live bool      // state is not Z (zombie) or X (dead)
}

// parseStatus reads the State and Uid lines of /proc/<pid>/status; ok is
// false when either is missing or malformed.
func parseStatus(s string) (procStatus, bool) {
	var st procStatus
	var haveState, haveUid bool
	for line := range strings.Lines(s) {
		k, v, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if v == "" {
				return st, false
			}
			st.live, haveState = v[0] != 'Z' && v[0] != 'X', true
		case "Uid":
			f := strings.Fields(v)
			if len(f) != 4 {
				return st, false
			}
			for i, x := range f {
				n, err := strconv.ParseUint(x, 10, 32)
				if err != nil {
					return st, false
				}
				st.uids[i] = uint32(n)
			}
			haveUid = true
		}
	}
	return st, haveState && haveUid
}
