package hostlocal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/internal/itest"
	"jerichoci/internal/mask"
	"jerichoci/model"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want procStatus
		ok   bool
	}{
		{"sleeping", "Name:\tsleep\nState:\tS (sleeping)\nUid:\t985\t985\t985\t985\nGid:\t985\t985\t985\t985\n",
			procStatus{uids: [4]uint32{985, 985, 985, 985}, live: true}, true},
		{"setuid program", "State:\tR (running)\nUid:\t985\t0\t0\t0\n", procStatus{uids: [4]uint32{985, 0, 0, 0}, live: true}, true},
		{"zombie", "State:\tZ (zombie)\nUid:\t985\t985\t985\t985\n", procStatus{uids: [4]uint32{985, 985, 985, 985}}, true},
		{"dead", "State:\tX (dead)\nUid:\t1\t1\t1\t1\n", procStatus{uids: [4]uint32{1, 1, 1, 1}}, true},
		{"no uid", "State:\tS (sleeping)\n", procStatus{live: true}, false},
		{"no state", "Uid:\t1\t1\t1\t1\n", procStatus{uids: [4]uint32{1, 1, 1, 1}}, false},
		{"short uid", "State:\tS\nUid:\t1\t1\n", procStatus{live: true}, false},
		{"bad uid", "State:\tS\nUid:\t1\tx\t1\t1\n", procStatus{live: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseStatus(tc.in)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("parseStatus = %+v, %t; want %+v, %t", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestKillUserRefusesRootAndSelf: killUser never turns on root or on the
// daemon's own user.
func TestKillUserRefusesRootAndSelf(t *testing.T) {
	for _, uid := range []uint32{0, uint32(os.Getuid()), uint32(os.Geteuid())} {
		if n, err := killUser(t.Context(), uid); err == nil || n != 0 {
			t.Errorf("killUser(%d) = %d, %v; want a refusal", uid, n, err)
		}
	}
}

// sleepMarker is a sleep duration unique to one test (sleep takes
// fractions), so that the test finds its own processes by their command
// line and no other test's.
func sleepMarker() string {
	return "3000." + strconv.FormatUint(uint64(uuid.New().ID()), 10)
}

// TestIsolatedJobLeftoversKilled: a job run as the user that leaves
// processes behind (setsid, a double fork under nohup) has none of them
// running once Execute returns, whether it passed, failed, timed out or
// was cancelled, and host.log says they were killed; TMPDIR was the job's
// own and is gone.
func TestIsolatedJobLeftoversKilled(t *testing.T) {
	u := jobUser(t)
	for _, tc := range []struct {
		name   string
		tail   string // how the command ends
		status model.RunStatus
		cancel bool
	}{
		{"passed", "exit 0", model.StatusPassed, false},
		{"failed", "exit 3", model.StatusFailed, false},
		{"timed out", "sleep 600", model.StatusFailed, false},
		{"cancelled", "sleep 600", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := isolatedFixture(t, u)
			marker := sleepMarker()
			cmd := `echo "tmp=$TMPDIR" > "$ARTIFACTS/tmp"; echo x > "$TMPDIR/mine" && w=writable && echo "tmp $w"
setsid sleep ` + marker + ` </dev/null >/dev/null 2>&1 & left=$!
# Until it has left the job's session, a kill of the job's group reaches it.
until [ "$(ps -o sid= -p $left | tr -d ' ')" = "$left" ]; do sleep 0.05; done
( nohup sleep ` + marker + ` </dev/null >/dev/null 2>&1 & )
w=started; echo "leftovers $w"
` + tc.tail
			j := f.job("left", f.snapshot("s", nil, "h1"), cmd)
			j.TimeoutSecs = 5
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				j.TimeoutSecs = 600
				seen := j.HostLog.(*hostLog).seen("leftovers started")
				go func() {
					select {
					case <-seen:
						cancel()
					case <-ctx.Done():
					}
				}()
			}
			res, err := f.x.Execute(ctx, j)
			switch {
			case tc.cancel && !errors.Is(err, context.Canceled):
				t.Fatalf("Execute = %+v, %v; want cancelled\n%s", res, err, logOf(j))
			case !tc.cancel && (err != nil || res.Status != tc.status):
				t.Fatalf("Execute = %+v, %v; want %s\n%s", res, err, tc.status, logOf(j))
			}
			log := logOf(j)
			if !strings.Contains(log, "leftovers started") || !strings.Contains(log, "tmp writable") {
				t.Fatalf("the command did not start its leftovers:\n%s", log)
			}
			// killUser checked that none was alive before Execute returned.
			if pids := itest.LiveWithMarker(t, marker); len(pids) > 0 {
				t.Errorf("processes the job left are still running: %v", pids)
			}
			if !strings.Contains(log, "leftover process(es) of "+u.Name+" (uid "+strconv.Itoa(int(u.UID))+") after the job") {
				t.Errorf("host log does not say the leftovers were killed:\n%s", log)
			}
			cache := f.cache(j)
			if tc.status == model.StatusPassed {
				if got := readFile(t, filepath.Join(j.JobDir, "artifacts", "tmp")); got != "tmp="+filepath.Join(cache, "tmp")+"\n" {
					t.Errorf("the job's TMPDIR: %q, want its own under %s", got, cache)
				}
			}
			if exists(filepath.Join(cache, "tmp")) {
				t.Errorf("the job's TMPDIR is still there")
			}
		})
	}
}

// sharedDir is a directory under the test's temporary directory that the
// job user may write: jobs of two executors leave their marks there.
func sharedDir(t *testing.T, u *User) string {
	t.Helper()
	parent := t.TempDir()
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	d := filepath.Join(parent, "shared")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, int(u.UID), int(u.GID)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestUserLockSerializesAcrossExecutors: two executors with state roots
// of their own (two daemons) run jobs as the same user; the second waits
// for the host-wide lock the first holds (it says so in its host log),
// starts only after the first ended (the order of their marks, not
// timing, shows it) and cannot read the first's environment from /proc:
// the process the first left with its secret is gone.
func TestUserLockSerializesAcrossExecutors(t *testing.T) {
	u := jobUser(t)
	fa, fb := isolatedFixture(t, u), isolatedFixture(t, u)
	shared := sharedDir(t, u)
	gate := filepath.Join(t.TempDir(), "go")
	if err := os.Chmod(filepath.Dir(gate), 0o711); err != nil {
		t.Fatal(err)
	}
	marker := sleepMarker()
	const secret = "lock-SECRET-5151"
	a := fa.job("a", fa.snapshot("s", nil, "h1"), `echo start-a >> `+shared+`/order; w=started; echo "a $w"
setsid sleep `+marker+` </dev/null >/dev/null 2>&1 & echo $! > `+shared+`/a.pids; echo $$ >> `+shared+`/a.pids
while [ ! -e `+gate+` ]; do sleep 0.1; done
echo end-a >> `+shared+`/order`)
	a.SecretEnv, a.Mask = map[string]string{"JCI_A_SECRET": secret}, mask.New(secret)
	a.TimeoutSecs = 600
	b := fb.job("b", fb.snapshot("s", nil, "h1"), `echo start-b >> `+shared+`/order
for p in $(cat `+shared+`/a.pids); do
  if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -q JCI_A_SECRET; then w=READ; else w=no; fi; echo "$w environ of $p"
done
echo end-b >> `+shared+`/order`)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	results := make([]struct {
		res executor.Result
		err error
	}, 2)
	run := func(i int, f *fixture, j executor.Job) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].res, results[i].err = f.x.Execute(ctx, j)
		}()
	}
	defer func() {
		// Whatever failed, let job a end.
		_ = os.WriteFile(gate, nil, 0o644)
		cancel()
		wg.Wait()
	}()
	run(0, fa, a)
	select {
	case <-a.HostLog.(*hostLog).seen("a started"):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	lockPath := filepath.Join(DefaultLockDir, "host-jobs-"+strconv.Itoa(int(u.UID))+".lock")
	if fi, err := os.Stat(lockPath); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the user lock %s: %v, want root's, mode 0600", lockPath, err)
	}
	if lf, err := os.Open(lockPath); err == nil {
		if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Errorf("the user lock is not held while job a runs: flock = %v", err)
		}
		lf.Close()
	}
	run(1, fb, b)
	select {
	case <-b.HostLog.(*hostLog).seen("waiting for host-jobs user lock " + lockPath):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if got := readFile(t, filepath.Join(shared, "order")); got != "start-a\n" {
		t.Fatalf("job b started while job a runs as the same user: %q", got)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.res.Status != model.StatusPassed {
			t.Fatalf("job %d: %+v, %v\na:\n%s\nb:\n%s", i, r.res, r.err, logOf(a), logOf(b))
		}
	}
	if got := readFile(t, filepath.Join(shared, "order")); got != "start-a\nend-a\nstart-b\nend-b\n" {
		t.Errorf("the jobs' marks: %q, want a's start and end, then b's", got)
	}
	blog := logOf(b)
	if strings.Contains(blog, "READ environ") || strings.Count(blog, "no environ of ") != 2 {
		t.Errorf("job b's view of job a's processes:\n%s", blog)
	}
	if !strings.Contains(blog, "acquired host-jobs user lock "+lockPath+" after ") {
		t.Errorf("job b's host log does not say it got the user lock:\n%s", blog)
	}
	if pids := itest.LiveWithMarker(t, marker); len(pids) > 0 {
		t.Errorf("the process job a left is still running: %v", pids)
	}
}

// TestUserLockWaitCancelled: a job waiting for the user's lock ends when
// its context does, saying so.
func TestUserLockWaitCancelled(t *testing.T) {
	u := jobUser(t)
	f := isolatedFixture(t, u)
	lockPath := filepath.Join(DefaultLockDir, "host-jobs-"+strconv.Itoa(int(u.UID))+".lock")
	if err := rootDir(DefaultLockDir); err != nil {
		t.Fatal(err)
	}
	lf, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	// Held by this test, as another daemon's job would (waiting for one).
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	j := f.job("waits", f.snapshot("s", nil, "h1"), `echo "ran"`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		select {
		case <-j.HostLog.(*hostLog).seen("waiting for host-jobs user lock"):
			cancel()
		case <-ctx.Done():
		}
	}()
	res, err := f.x.Execute(ctx, j)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute = %+v, %v; want cancelled", res, err)
	}
	log := logOf(j)
	if strings.Contains(log, "\nran\n") || !strings.Contains(log, "stopped waiting for host-jobs user lock "+lockPath) {
		t.Errorf("host log:\n%s", log)
	}
}

// TestProcessLimit: a job run as the user has RLIMIT_NPROC set, soft and
// hard, to MaxProcesses, cannot raise it, and its forks fail there; what
// it forked is killed after it.
func TestProcessLimit(t *testing.T) {
	u := jobUser(t)
	f := isolatedFixture(t, u)
	f.x.Isolate.MaxProcesses = 40
	marker := sleepMarker()
	// Bounded even without the limit: at most 200 sleeping children.
	cmd := `echo "soft=$(ulimit -Su) hard=$(ulimit -Hu)"
if ulimit -u 100000 2>/dev/null; then w=RAI; echo "${w}SED"; fi
perl -e '$n = 0; while ($n < 200) { my $p = fork(); if (!defined $p) { print "fork failed: $!\n"; last } if ($p == 0) { open STDOUT, ">/dev/null"; open STDERR, ">/dev/null"; exec "sleep", "` + marker + `"; exit 1 } $n++ } print "forked $n\n"'`
	j := f.job("bomb", f.snapshot("s", nil, "h1"), cmd)
	res, err := f.x.Execute(context.Background(), j)
	if err != nil || res.Status != model.StatusPassed {
		t.Fatalf("Execute = %+v, %v\n%s", res, err, logOf(j))
	}
	log := logOf(j)
	if !strings.Contains(log, "\nsoft=40 hard=40\n") || strings.Contains(log, "RAISED") ||
		!strings.Contains(log, "\nfork failed: Resource temporarily unavailable\n") {
		t.Errorf("host log (want the limit 40 set, not raised, and a fork refused):\n%s", log)
	}
	var forked int
	for line := range strings.Lines(log) {
		if s, ok := strings.CutPrefix(line, "forked "); ok {
			forked, _ = strconv.Atoi(strings.TrimSpace(s))
		}
	}
	if forked == 0 || forked >= 40 {
		t.Errorf("forked %d children, want some and fewer than the limit 40", forked)
	}
	if pids := itest.LiveWithMarker(t, marker); len(pids) > 0 {
		t.Errorf("the job's children are still running: %v", pids)
	}
}
