package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Isolation is how `jerichoci serve` runs host-local jobs, whose commands
// come with the source a client uploads (docs/SECURITY.md, "Host-local
// jobs"). The command and its Nix dev-shell refresh get a scrubbed
// environment: the allow-list (PATH, LANG and TERM from the daemon's
// environment, HOME, ARTIFACTS, CARGO_HOME, CARGO_TARGET_DIR and
// OPENCLAW_DIR set by the executor) and the job's declared secret_env,
// nothing else. With User they run as that unprivileged user, and the only
// part of the state root that user can reach is the cache of the job's own
// scope, while its job runs.
type Isolation struct {
	// User runs the command and its nix; nil runs them as the daemon's own
	// user (a daemon that is not root cannot switch). Jobs of one User run
	// one at a time on the host, under a host-wide lock in LockDir, and
	// every process of the User is killed when a job ends (userlock.go).
	User *User
	// LockDir holds the host-wide locks of the users; DefaultLockDir when
	// empty. Every daemon of the host must use the same.
	LockDir string
	// MaxProcesses is the RLIMIT_NPROC of a User's job (its command and
	// nix): how many processes and threads the user may have, counted
	// host-wide; 0 sets no limit.
	MaxProcesses int
}

// DefaultMaxProcesses is serve's --host-jobs-max-processes default: room
// for a parallel cargo build or a browser test, far below Linux's default
// pid_max (32768).
const DefaultMaxProcesses = 4096

// User is the unprivileged user host-local jobs run as. Its supplementary
// groups are cleared.
type User struct {
	Name     string
	UID, GID uint32
}

// LookupUser resolves name to a user host-local jobs may run as: one that
// exists and is neither uid 0 nor in group 0.
func LookupUser(name string) (*User, error) {
	if name == "" {
		return nil, errors.New("no user named")
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("no such user %q (scripts/hostjobs-up creates %s): %w", name, DefaultUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	switch {
	case uid == 0:
		return nil, fmt.Errorf("user %q is uid 0 (root): host-local jobs must run as an unprivileged user", name)
	case gid == 0:
		return nil, fmt.Errorf("user %q has primary group 0 (root): host-local jobs must run as an unprivileged user and group", name)
	}
	return &User{Name: name, UID: uint32(uid), GID: uint32(gid)}, nil
}

// DefaultUser is the user scripts/hostjobs-up creates for host-local jobs.
const DefaultUser = "jerichoci-jobs"

// credential is how a process of u starts: its uid and gid, no
// supplementary groups.
func (u *User) credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}
}

// CheckReachable reports a directory above stateRoot that u cannot pass
// through: the job's workspace and artifacts lie below stateRoot, so every
// directory above it must let u search it.
func CheckReachable(u *User, stateRoot string) error {
	for dir := filepath.Dir(stateRoot); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if !searchable(fi, u) {
			st := fi.Sys().(*syscall.Stat_t)
			return fmt.Errorf("host-local jobs run as %s (uid %d), who cannot reach the state root %s: %s is mode %04o, owner uid %d, group %d; give it search permission for others (chmod o+x) or pick a --state-root that user can reach",
				u.Name, u.UID, stateRoot, dir, fi.Mode().Perm(), st.Uid, st.Gid)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// searchable says whether u may search the directory fi by its mode bits
// (ACLs are not read).
func searchable(fi fs.FileInfo, u *User) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == u.UID:
		return perm&0o100 != 0
	case st.Gid == u.GID:
		return perm&0o010 != 0
	}
	return perm&0o001 != 0
}

// Modes of the state root for host-local jobs run as another user: the
// state root, cache/ and cache/host-local/ let the user through without
// listing them; everything else in the state root and in cache/ (runs,
// sources, the NATS store and credentials, the shared caches) is closed
// to group and others; a scope's cache is closed (scopeIdle) but while
// its job runs (scopeOpen).
const (
	passThrough fs.FileMode = 0o711
	scopeIdle   fs.FileMode = 0o700
	scopeOpen   fs.FileMode = 0o711
)

// PrepareStateRoot sets the state root's modes for host-local jobs run as
// another user (see passThrough) and closes every scope's cache, a scope
// left open by a daemon that stopped during a job included. It runs before
// the first job; every job closes the state root again (directories made
// since are closed then).
func PrepareStateRoot(stateRoot string) error {
	if err := closeStateRoot(stateRoot); err != nil {
		return err
	}
	dir := filepath.Join(stateRoot, "cache", "host-local")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			if err := restrict(p); err != nil {
				return err
			}
			continue
		}
		if err := os.Lchown(p, 0, 0); err != nil {
			return fmt.Errorf("close host-local cache %s: %w", p, err)
		}
		if err := os.Chmod(p, scopeIdle); err != nil {
			return fmt.Errorf("close host-local cache %s: %w", p, err)
		}
	}
	return nil
}

// closeStateRoot leaves the job user a way through the state root to
// cache/host-local/ and closes everything else in the state root and in
// cache/ to group and others.
func closeStateRoot(stateRoot string) error {
	cache := filepath.Join(stateRoot, "cache")
	hostLocal := filepath.Join(cache, "host-local")
	if err := os.MkdirAll(hostLocal, 0o700); err != nil {
		return err
	}
	for _, d := range []string{stateRoot, cache, hostLocal} {
		fi, err := os.Lstat(d)
		if err != nil {
			return err
		}
		if d != stateRoot && !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (a %v)", d, fi.Mode().Type())
		}
		if fi.Mode().Perm() != passThrough {
			if err := os.Chmod(d, passThrough); err != nil {
				return err
			}
		}
	}
	keep := map[string]string{stateRoot: "cache", cache: "host-local"}
	for _, dir := range slices.Sorted(maps.Keys(keep)) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Name() == keep[dir] {
				continue
			}
			if err := restrict(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// restrict takes group and others' permissions from p (a symlink is left:
// its mode means nothing and its target is not the state root's).
func restrict(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(p, fi.Mode().Perm()&^0o077); err != nil {
		return fmt.Errorf("close %s to other users: %w", p, err)
	}
	return nil
}

// chownTree gives root and everything below it (links themselves, never
// their targets) to uid and gid.
func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// ownedBy says whether p is a directory owned by uid.
func ownedBy(p string, uid uint32) bool {
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == uid
}

// workspaceRecord is <cache>/workspace.hash: the content hash of the
// snapshot last copied to the workspace of a job run as another user,
// written by the daemon only (the workspace's own pikaci-snapshot.json is
// that user's to change, so it cannot say the workspace may be reused).
const workspaceRecord = "workspace.hash"

// refreshWorkspace brings <cache>/workspace to the run snapshot's content,
// as the package's refreshWorkspace does; for a job run as another user
// the workspace is that user's and its reuse is decided by workspaceRecord.
func (j *jobRun) refreshWorkspace(ctx context.Context) (string, error) {
	u := j.x.user()
	if u == nil {
		r, err := refreshWorkspace(ctx, j.job.SnapshotDir, j.hash, j.workspace)
		j.freshWorkspace = r == workspaceRematerialized
		return r, err
	}
	b, err := os.ReadFile(filepath.Join(j.cacheDir, workspaceRecord))
	if err == nil && j.hash != nil && string(b) == *j.hash && ownedBy(j.workspace, u.UID) {
		return workspaceReused, nil
	}
	if err := j.rematerialize(ctx); err != nil {
		return "", err
	}
	return workspaceRematerialized, nil
}

// rematerialize copies the snapshot to the workspace afresh and gives the
// copy to the job user.
func (j *jobRun) rematerialize(ctx context.Context) error {
	u := j.x.user()
	record := filepath.Join(j.cacheDir, workspaceRecord)
	if err := os.Remove(record); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := removeAll(j.workspace); err != nil {
		return err
	}
	if err := materialize(ctx, j.job.SnapshotDir, j.workspace); err != nil {
		return fmt.Errorf("materialize host-local workspace %s from %s: %w", j.workspace, j.job.SnapshotDir, err)
	}
	if err := chownTree(j.workspace, int(u.UID), int(u.GID)); err != nil {
		return fmt.Errorf("give host-local workspace %s to %s: %w", j.workspace, u.Name, err)
	}
	j.freshWorkspace = true
	if j.hash == nil {
		return nil
	}
	return os.WriteFile(record, []byte(*j.hash), 0o600)
}

// flakeSource is the directory nix renders the dev shell from: the run
// snapshot, or, for a job run as another user (who cannot reach the run's
// directory), the workspace, copied afresh from the snapshot when this job
// reused it, so that nix sees the snapshot's content.
func (j *jobRun) flakeSource(ctx context.Context) (string, error) {
	if j.x.user() == nil {
		return j.job.SnapshotDir, nil
	}
	if !j.freshWorkspace {
		if err := j.rematerialize(ctx); err != nil {
			return "", fmt.Errorf("refresh host-local workspace for job `%s`: %w", j.job.ID, err)
		}
		j.hostf("host-local workspace %s for the nix environment refresh", workspaceRematerialized)
	}
	return j.workspace, nil
}

// isolate makes the job's fresh HOME, TMPDIR and, for a job run as
// another user, its staged artifacts directory, all the user's, and opens
// the scope's cache to that user until finishIsolated. It returns the
// artifacts directory the job writes.
func (j *jobRun) isolate(ctx context.Context, artifacts string) (string, error) {
	j.home, j.tmp = filepath.Join(j.cacheDir, "home"), filepath.Join(j.cacheDir, "tmp")
	for _, d := range []string{j.home, j.tmp} {
		if err := j.freshDir(d); err != nil {
			return "", err
		}
	}
	reap := context.WithoutCancel(ctx) // what the job left dies however it ended
	j.finish = sync.OnceValue(func() error { return j.closeScope(reap, artifacts) })
	if j.x.user() == nil {
		return artifacts, nil
	}
	j.staged = filepath.Join(j.cacheDir, "artifacts")
	if err := j.freshDir(j.staged); err != nil {
		return "", err
	}
	if err := os.Chmod(j.cacheDir, scopeOpen); err != nil {
		return "", fmt.Errorf("open host-local cache %s to the job: %w", j.cacheDir, err)
	}
	return j.staged, nil
}

// finishIsolated kills what the job left running, closes the scope's
// cache, hands the artifacts back and removes HOME and TMPDIR, once.
func (j *jobRun) finishIsolated() error {
	if j.finish == nil {
		return nil
	}
	return j.finish()
}

func (j *jobRun) closeScope(ctx context.Context, artifacts string) error {
	var errs []error
	if j.x.user() != nil {
		// Nothing of the job's may run on while its artifacts are handed
		// back (nor reach the next job: lockUser reaps again).
		if err := j.reapUser(ctx, "after the job"); err != nil {
			errs = append(errs, err)
		}
		if err := os.Chmod(j.cacheDir, scopeIdle); err != nil {
			errs = append(errs, fmt.Errorf("close host-local cache %s: %w", j.cacheDir, err))
		}
		if err := j.handBack(artifacts); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeAll(j.home); err != nil {
		errs = append(errs, fmt.Errorf("remove the job's HOME %s: %w", j.home, err))
	}
	if err := removeAll(j.tmp); err != nil {
		errs = append(errs, fmt.Errorf("remove the job's TMPDIR %s: %w", j.tmp, err))
	}
	return errors.Join(errs...)
}

// handBack moves what the job wrote to its staged artifacts into the job's
// artifacts directory, owned by root; guest.log and result.json are the
// runner's to write and are dropped (a link there would have root write
// or show another file).
func (j *jobRun) handBack(artifacts string) error {
	entries, err := os.ReadDir(j.staged)
	if err != nil {
		return fmt.Errorf("hand back the artifacts of job `%s`: %w", j.job.ID, err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "guest.log" || name == "result.json" {
			j.hostf("dropped the job's artifacts/%s: the runner writes that file", name)
			continue
		}
		src, dst := filepath.Join(j.staged, name), filepath.Join(artifacts, name)
		if err := chownTree(src, 0, 0); err != nil {
			return fmt.Errorf("hand back artifact %s of job `%s`: %w", src, j.job.ID, err)
		}
		if err := removeAll(dst); err != nil {
			return err
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("hand back artifact %s of job `%s`: %w", src, j.job.ID, err)
		}
	}
	return removeAll(j.staged)
}

// freshDir makes p an empty directory of the job user.
func (j *jobRun) freshDir(p string) error {
	if err := removeAll(p); err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	if u := j.x.user(); u != nil {
		return os.Chown(p, int(u.UID), int(u.GID))
	}
	return nil
}

// jobDir makes the cache directory p (CARGO_HOME, CARGO_TARGET_DIR) and,
// for a job run as another user, gives it to that user when it is not
// already theirs.
func (j *jobRun) jobDir(p string) error {
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	if u := j.x.user(); u != nil && !ownedBy(p, u.UID) {
		if err := chownTree(p, int(u.UID), int(u.GID)); err != nil {
			return fmt.Errorf("give %s to %s: %w", p, u.Name, err)
		}
	}
	return nil
}

// limited wraps argv so that it runs with the job user's RLIMIT_NPROC,
// soft and hard, set to MaxProcesses: bash's `ulimit -u` sets it in the
// process that then becomes argv, after the switch to the user and before
// anything of the job runs, and the user cannot raise a hard limit. A
// fork bomb of the user stops there, not at the host's pid_max.
func (j *jobRun) limited(argv []string) []string {
	n := 0
	if j.x.user() != nil {
		n = j.x.Isolate.MaxProcesses
	}
	if n <= 0 {
		return argv
	}
	const script = `ulimit -u "$1" || { echo "[pikaci] cannot set the host-local job's process limit to $1" >&2; exit 126; }; shift; exec "$@"`
	return append([]string{"/bin/bash", "--noprofile", "--norc", "-c", script, "jerichoci-nproc", strconv.Itoa(n)}, argv...)
}

// defaultPath is the PATH of an isolated job when the daemon has none.
const defaultPath = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

// allowedEnv names the variables an isolated job's command takes from the
// daemon's environment; the executor sets HOME, ARTIFACTS, CARGO_HOME,
// CARGO_TARGET_DIR and OPENCLAW_DIR, and adds the job's secret_env.
var allowedEnv = []string{"PATH", "LANG", "TERM"}

// baseEnv is an isolated job's environment before the executor's own
// variables: allowedEnv's values from the daemon's environment, HOME and
// TMPDIR (the job's own, not the host's shared /tmp).
func (j *jobRun) baseEnv() []string {
	env := j.x.env()
	out := make([]string, 0, len(allowedEnv)+1)
	for _, k := range allowedEnv {
		if v, ok := env(k); ok && v != "" {
			out = append(out, k+"="+v)
		} else if k == "PATH" {
			out = append(out, k+"="+defaultPath)
		}
	}
	return append(out, "HOME="+j.home, "TMPDIR="+j.tmp)
}

// nixEnv is the environment of an isolated job's nix: baseEnv, and
// NIX_REMOTE naming the Nix daemon (the daemon's own NIX_REMOTE when it
// names a daemon socket, unix://PATH).
func (j *jobRun) nixEnv() []string {
	remote := "daemon"
	if v, ok := j.x.env()("NIX_REMOTE"); ok && strings.HasPrefix(v, "unix://") {
		remote = v
	}
	return append(j.baseEnv(), "NIX_REMOTE="+remote)
}
