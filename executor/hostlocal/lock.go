package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
)

// lockRetry is how often a busy cache lock is tried again, as the original.
const lockRetry = 250 * time.Millisecond

// lock takes the exclusive flock on <cache>/.lock, retrying a busy lock
// until the job's deadline. It returns the release, or a failed result when
// the deadline passed first.
func (j *jobRun) lock(ctx context.Context) (unlock func(), res *executor.Result, err error) {
	mode := os.FileMode(0o755)
	if j.x.user() != nil {
		mode = scopeIdle
	}
	if err := os.MkdirAll(j.cacheDir, mode); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(j.cacheDir, ".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, nil, err
	}
	if j.x.user() != nil {
		// The job user passes through the cache directory while its job
		// runs: a lock it could open, it could hold.
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	release := func() {
		// Closing the file alone would release the flock as well.
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		j.log.Debug("released host-local cache lock", zap.String("lock", path))
	}
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			j.hostf("acquired host-local cache lock for `%s` at %s", j.job.ID, path)
			j.log.Info("acquired host-local cache lock", zap.String("lock", path), zap.Bool("waited", waited))
			return release, nil, nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !time.Now().Before(j.deadline) {
			f.Close()
			msg := fmt.Sprintf("timed out after %ds waiting for host-local cache lock %s", j.job.TimeoutSecs, path)
			j.hostf("%s", msg)
			j.log.Warn("timed out waiting for host-local cache lock", zap.String("lock", path))
			r := failed(msg)
			return nil, &r, nil
		}
		if !waited {
			j.hostf("waiting for host-local cache lock %s", path)
			j.log.Info("waiting for host-local cache lock", zap.String("lock", path))
			waited = true
		}
		t := time.NewTimer(lockRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, nil, fmt.Errorf("waiting for host-local cache lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}
