package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// DefaultLockDir holds the host-wide locks of the host-jobs users,
// host-jobs-<uid>.lock: every jerichoci daemon of the host takes the lock
// of its --host-jobs-user for the whole of a host-local job, so two jobs
// never run as one user at the same time, whichever daemon runs them
// (docs/SECURITY.md, "Host-local jobs"). /run is root's and emptied at
// boot; a daemon that dies releases its lock with its file descriptors.
const DefaultLockDir = "/run/jerichoci"

// lockDir is DefaultLockDir, or Isolation.LockDir when set.
func (i *Isolation) lockDir() string {
	if i.LockDir != "" {
		return i.LockDir
	}
	return DefaultLockDir
}

// lockUser takes the host-wide lock of the job user, waiting for it as
// long as it takes (a host job of another daemon, or of another worker of
// this one, holds it) until ctx ends; the wait does not count against the
// job's timeout. Once it holds the lock it kills every process of the
// user that an earlier job left (a daemon that died during a job leaves
// them). The release kills every process of the user again, then unlocks.
// Without a job user (a daemon that is not root runs jobs as itself) there
// is nothing to lock.
func (j *jobRun) lockUser(ctx context.Context) (release func(), err error) {
	u := j.x.user()
	if u == nil {
		return func() {}, nil
	}
	dir := j.x.Isolate.lockDir()
	if err := rootDir(dir); err != nil {
		return nil, fmt.Errorf("host-jobs user lock directory: %w", err)
	}
	path := filepath.Join(dir, "host-jobs-"+strconv.FormatUint(uint64(u.UID), 10)+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open host-jobs user lock %s: %w", path, err)
	}
	if err := rootFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("host-jobs user lock %s: %w", path, err)
	}
	started := time.Now()
	waited, err := flockWait(ctx, f, func() {
		j.hostf("waiting for host-jobs user lock %s: another host-local job runs as %s on this host", path, u.Name)
		j.log.Info("waiting for the host-jobs user lock", zap.String("lock", path), zap.String("user", u.Name))
	}, nil)
	if err != nil {
		f.Close()
		if ctx.Err() != nil {
			j.hostf("stopped waiting for host-jobs user lock %s: %v", path, ctx.Err())
		}
		return nil, fmt.Errorf("host-jobs user lock %s: %w", path, err)
	}
	if waited {
		j.hostf("acquired host-jobs user lock %s after %.3fs", path, time.Since(started).Seconds())
	}
	j.log.Info("acquired the host-jobs user lock", zap.String("lock", path), zap.Bool("waited", waited))
	reap := context.WithoutCancel(ctx) // what the job left dies however it ended
	release = func() {
		j.reapUser(reap, "after the job")
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		j.log.Debug("released the host-jobs user lock", zap.String("lock", path))
	}
	if err := j.reapUser(reap, "left by an earlier job"); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// reapUser kills every process of the job user (killUser) and says so in
// the host log and the daemon's log when it found any, with why: when.
// Processes that outlived every round are an error.
func (j *jobRun) reapUser(ctx context.Context, when string) error {
	u := j.x.user()
	if u == nil {
		return nil
	}
	n, err := killUser(ctx, u.UID)
	if n > 0 {
		j.hostf("killed %d leftover process(es) of %s (uid %d) %s", n, u.Name, u.UID, when)
		j.log.Warn("killed leftover processes of the host-jobs user", zap.Int("processes", n), zap.String("user", u.Name), zap.String("when", when))
	}
	if err != nil {
		j.hostf("could not kill every process of %s %s: %v", u.Name, when, err)
		j.log.Error("could not kill every process of the host-jobs user", zap.String("user", u.Name), zap.Error(err))
		return fmt.Errorf("kill the processes of host-jobs user %s %s: %w", u.Name, when, err)
	}
	return nil
}

// rootDir makes dir (mode 0755) when missing and checks that it is a
// directory of root's that nobody else may write: a lock there is root's.
func rootDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a %v)", dir, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner to check", dir)
	}
	if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s must be a directory of root's that only root writes, is mode %04o owner uid %d", dir, fi.Mode().Perm(), st.Uid)
	}
	return nil
}

// rootFile checks that f is a regular file of root's that only root may
// open: a lock the job user could open, it could hold.
func rootFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no owner to check")
	}
	if !fi.Mode().IsRegular() || st.Uid != 0 || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("must be a regular file of root's, mode 0600, is %v owner uid %d", fi.Mode(), st.Uid)
	}
	return nil
}
