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
	waited, err := flockWait(ctx, f, func() {
		j.hostf("waiting for host-local cache lock %s", path)
		j.log.Info("waiting for host-local cache lock", zap.String("lock", path))
	}, func() bool { return !time.Now().Before(j.deadline) })
	switch {
	case errors.Is(err, errLockExpired):
		f.Close()
		msg := fmt.Sprintf("timed out after %ds waiting for host-local cache lock %s", j.job.TimeoutSecs, path)
		j.hostf("%s", msg)
		j.log.Warn("timed out waiting for host-local cache lock", zap.String("lock", path))
		r := failed(msg)
		return nil, &r, nil
	case err != nil:
		f.Close()
		return nil, nil, fmt.Errorf("host-local cache lock %s: %w", path, err)
	}
	j.hostf("acquired host-local cache lock for `%s` at %s", j.job.ID, path)
	j.log.Info("acquired host-local cache lock", zap.String("lock", path), zap.Bool("waited", waited))
	return release, nil, nil
}

// errLockExpired is flockWait's error when expired said so.
var errLockExpired = errors.New("gave up waiting for the lock")

// flockWait takes the exclusive flock on f, trying again every lockRetry
// while another holder has it: waiting is called once, at the first busy
// try; expired, asked before each wait, ends it with errLockExpired (nil:
// never); so does ctx, with its error. waited says whether it was busy.
func flockWait(ctx context.Context, f *os.File, waiting func(), expired func() bool) (waited bool, err error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return waited, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return waited, fmt.Errorf("flock: %w", err)
		case expired != nil && expired():
			return waited, errLockExpired
		}
		if !waited {
			waiting()
			waited = true
		}
		t := time.NewTimer(lockRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return waited, fmt.Errorf("waiting: %w", ctx.Err())
		case <-t.C:
		}
	}
}
