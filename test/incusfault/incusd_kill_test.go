package incusfault

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/executor"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

// incusdPIDs returns the main incusd processes: command name incusd, not a
// zombie, no subcommand as its first argument (its helpers run as
// `incusd forkexec …` and the like). Only those are ever killed.
func incusdPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "incusd" || processGone(pid) {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		// `incusd [--flag value …]`, not `incusd forkexec …`.
		if len(args) == 1 || strings.HasPrefix(args[1], "-") {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// processGone reports whether pid has exited (gone, or a zombie that
// nobody reaps: where PID 1 is not an init, it stays one).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) STATE …; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}

// waitQuiet waits until incusd serves nobody else: no instance of any
// project, other than the test's own, that runs or was created in the
// last 15 minutes. The incusd test lock keeps this repository's test
// packages away; this keeps the test from killing incusd under a `make
// run` daemon or a test binary built before the lock existed. Outside CI
// a busy incusd skips the test after 3 minutes, naming the instances.
func waitQuiet(t *testing.T, api incusAPI, keys ...string) time.Duration {
	t.Helper()
	start := time.Now()
	var busy []string
	for {
		all, err := api.instances(t.Context())
		if err != nil {
			t.Fatalf("list the instances of every project: %v", err)
		}
		busy = busy[:0]
		for _, in := range all {
			if ownedBy(in, keys...) {
				continue
			}
			if in.Status == "Running" || time.Since(in.CreatedAt) < 15*time.Minute {
				busy = append(busy, fmt.Sprintf("%s/%s (%s, created %s ago)", in.Project, in.Name, in.Status,
					time.Since(in.CreatedAt).Round(time.Second)))
			}
		}
		if len(busy) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > 3*time.Minute {
			break
		}
		time.Sleep(2 * time.Second)
	}
	msg := fmt.Sprintf("incusd still serves something else after 3m, not killing it: %d instances running or created in the last 15 minutes: %s",
		len(busy), strings.Join(busy, ", "))
	if testenv.CI() {
		// In CI the lock has kept every test package away: these are
		// leftovers of earlier tests, not users.
		t.Log(msg + " (CI: going on)")
		return time.Since(start)
	}
	t.Skip(msg)
	return 0
}

// incusUp runs scripts/incus-up and returns its output and how long it took.
func incusUp(t *testing.T) (string, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "incus-up"))
	cmd.Dir = root
	// incusd, started in the background, must not hold the output pipe;
	// do not hang on it if it does.
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	return string(out), time.Since(start), err
}

// incusUpReady reports whether incus-up's output ends by saying incusd
// is up and everything in place.
func incusUpReady(out string) bool {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	return strings.HasPrefix(last, "incus-up: nothing to do: incusd up") || strings.HasPrefix(last, "incus-up: ready: ")
}

// TestIncusdKill9MidJobRetriesAsInfrastructureAndLeaksNothing kills incusd
// (kill -9) while a job's command runs in its instance, with a second job
// queued, starts incusd again 3 s later with scripts/incus-up, and checks:
// the cut attempt is recorded as an infrastructure error (never as a
// failed test) and retried; both jobs get exactly one final record, and
// it is passed; the work stream empties; the cut attempt's instance, which
// outlives incusd, is reaped; incusd is up and incus-up says it is ready.
func TestIncusdKill9MidJobRetriesAsInfrastructureAndLeaksNothing(t *testing.T) {
	api := requireIncusd(t)
	slow, queued := uuid.NewString(), uuid.NewString()
	keys := []string{slow, queued}
	quietWait := waitQuiet(t, api, keys...)
	pids, err := incusdPIDs()
	switch {
	case err != nil:
		t.Fatal(err)
	case len(pids) == 0:
		unavailable(t, "incusd answers but no incusd process is visible here (another PID namespace?): cannot kill it")
	case len(pids) > 1:
		t.Fatalf("%d incusd processes %v: cannot tell which one serves the socket", len(pids), pids)
	}
	pid := pids[0]

	url := startNATS(t)
	cat := writeCatalog(t, map[string]string{
		"incus-slow": "echo start; sleep 15; echo done",
		"incus-pass": "echo hello",
	})
	// Retries 2s, 4s, 8s, 16s, 32s apart: a minute for incusd to come back.
	const maxDeliver = 6
	d := startDaemon(t, url, "daemon-a", cat, 1, "--max-deliver", strconv.Itoa(maxDeliver), "--retry-delay", "2s")
	o := newOrchestrator(t, url)
	o.publish(t, slow, "incus-slow")
	o.publish(t, queued, "incus-pass")

	// Mid-job: the guest runner has started the command.
	var first instance
	itest.WaitFor(t, "the slow job's command to run", 3*time.Minute, func() bool {
		all, err := api.instances(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range all {
			if ownedBy(in, slow) && in.Status == "Running" {
				first = in
				hl, _ := os.ReadFile(filepath.Join(d.stateRoot, "runs", in.Config[executor.ConfigRunID], "jobs", "job", "host.log"))
				return bytes.Contains(hl, []byte("[runner:stdout] start"))
			}
		}
		return false
	})
	firstRun := first.Config[executor.ConfigRunID]

	// From here on incusd must be brought back whatever happens.
	t.Cleanup(func() {
		if api.up(context.Background()) {
			return
		}
		out, _, err := incusUp(t)
		if err != nil || !api.up(context.Background()) {
			t.Errorf("cleanup: scripts/incus-up did not bring incusd back (%v):\n%s", err, out)
		}
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 incusd (pid %d): %v", pid, err)
	}
	killed := time.Now()
	itest.WaitFor(t, "incusd to die", 30*time.Second, func() bool { return processGone(pid) })
	// scripts/incus-up starts incusd with setsid where PID 1 is not
	// systemd (our machines), else as systemd's incus.service and
	// incus.socket, which bring a killed incusd back by themselves.
	bySystemd := systemdRunsIncus()
	if !bySystemd && api.up(t.Context()) {
		t.Fatal("incusd still answers after kill -9 of its process")
	}
	time.Sleep(3 * time.Second)
	out, upTook, err := incusUp(t)
	if err != nil {
		t.Fatalf("scripts/incus-up did not start incusd again (%v, after %s):\n%s", err, upTook.Round(100*time.Millisecond), out)
	}
	back := time.Now()
	if !bySystemd && !strings.Contains(out, "starting incusd") {
		t.Errorf("scripts/incus-up did not say it started incusd (how does it see a dead one?):\n%s", out)
	}
	if !api.up(t.Context()) {
		t.Fatalf("incusd does not answer after scripts/incus-up:\n%s", out)
	}

	// The job runs again: an instance of another run of it is up.
	var againAt time.Time
	itest.WaitFor(t, "the slow job to run again", 4*time.Minute, func() bool {
		if o.result(t, slow) != nil {
			return true
		}
		all, err := api.instances(t.Context())
		if err != nil {
			return false
		}
		for _, in := range all {
			if ownedBy(in, slow) && in.Config[executor.ConfigRunID] != firstRun && in.Status == "Running" {
				againAt = time.Now()
				return true
			}
		}
		return false
	})
	results := map[string]model.RunRecord{}
	itest.WaitFor(t, "the final records of both jobs", 5*time.Minute, func() bool {
		for _, k := range keys {
			if r := o.result(t, k); r != nil {
				results[k] = *r
			}
		}
		return len(results) == len(keys)
	})
	finalAt := time.Now()
	o.streamEmpty(t)

	runs := diskRuns(t, d)
	for _, k := range keys {
		res := results[k]
		if res.Status != model.StatusPassed || len(res.Jobs) != 1 || model.Value(res.Jobs[0].Message) != "test passed" {
			t.Errorf("job %s: result %s %q, want passed (\"test passed\")", k, res.Status, model.Value(res.Message))
		}
		if n := o.resultValues(t, k); n != 1 {
			t.Errorf("job %s: %d values in the results bucket, want 1", k, n)
		}
		finals := 0
		for _, r := range runs[k] {
			msg := model.Value(r.rec.Message)
			switch {
			case r.rec.RunID == res.RunID:
				finals++
				if r.rec.Status != res.Status {
					t.Errorf("job %s: run.json of the final run is %s, the result %s", k, r.rec.Status, res.Status)
				}
			case r.rec.Status == model.StatusFailed && strings.HasPrefix(msg, "infrastructure error on delivery "):
				// retried as an infrastructure failure: what we want
			default:
				t.Errorf("job %s: attempt %s (delivery %d) is %s %q: want an infrastructure error that goes back to the queue",
					k, r.rec.RunID, r.job.Delivery, r.rec.Status, msg)
			}
		}
		if finals != 1 {
			t.Errorf("job %s: %d run.json files of the final run %s, want 1", k, finals, res.RunID)
		}
	}
	if results[slow].RunID == firstRun {
		t.Errorf("the slow job's result is the run incusd died under (%s): want a retry", firstRun)
	}
	var cut *diskRun
	for i, r := range runs[slow] {
		if r.rec.RunID == firstRun {
			cut = &runs[slow][i]
		}
	}
	if cut == nil {
		t.Errorf("no run directory of the cut attempt %s", firstRun)
	} else if want := fmt.Sprintf("infrastructure error on delivery 1 of %d, the job goes back to the queue: ", maxDeliver); !strings.HasPrefix(model.Value(cut.rec.Message), want) {
		t.Errorf("the cut attempt is %s %q, want a message starting %q", cut.rec.Status, model.Value(cut.rec.Message), want)
	}

	// Nothing leaks: the cut attempt's instance outlived incusd (its
	// container kept running) and must be reaped.
	var left []string
	itest.WaitFor(t, "no instance of the jobs left", 2*time.Minute, func() bool {
		all, err := api.instances(t.Context())
		if err != nil {
			return false
		}
		left = left[:0]
		for _, in := range all {
			if ownedBy(in, keys...) {
				left = append(left, in.Name)
			}
		}
		return len(left) == 0
	})
	clean := time.Now()
	select {
	case <-d.done:
		t.Errorf("the daemon exited (%v) while incusd was down", d.cmd.ProcessState)
	default:
	}

	attempts := map[string][]string{}
	for _, k := range keys {
		sort.Slice(runs[k], func(i, j int) bool { return runs[k][i].job.Delivery < runs[k][j].job.Delivery })
		for _, r := range runs[k] {
			attempts[k] = append(attempts[k], fmt.Sprintf("delivery %d at %+.1fs %s", r.job.Delivery,
				r.rec.CreatedAt.Sub(killed).Seconds(), r.rec.Status))
		}
	}
	again := "-"
	if !againAt.IsZero() {
		again = fmt.Sprintf("%.1fs", againAt.Sub(killed).Seconds())
	}
	t.Logf("incusd kill -9 (pid %d): waited %s for the lock and %s for quiet; incus-up took %.1fs (incusd back %.1fs after the kill); "+
		"the slow job's instance was seen running again %s after the kill and both results were in %.1fs after it; no instance left %.1fs after it; "+
		"slow job attempts (start relative to the kill) %v, queued job attempts %v; reaper deletions %d, daemon warnings: %d orphan reaper, %d pull failed",
		pid, lockWaited.Round(time.Second), quietWait.Round(time.Second), upTook.Seconds(), back.Sub(killed).Seconds(),
		again, finalAt.Sub(killed).Seconds(), clean.Sub(killed).Seconds(), attempts[slow], attempts[queued],
		itest.LinesWith(d.log.String(), "reaped orphan instance"), itest.LinesWith(d.log.String(), "orphan reaper"), itest.LinesWith(d.log.String(), "pull failed"))
	if cut != nil {
		t.Logf("the cut attempt's message: %s", model.Value(cut.rec.Message))
	}

	// incusd is back for everyone: incus-up finds everything in place.
	out, _, err = incusUp(t)
	if err != nil || !incusUpReady(out) {
		t.Errorf("scripts/incus-up after the test (%v) does not report ready:\n%s", err, out)
	}
}

// systemdRunsIncus: incusd is systemd's incus.service (PID 1 is systemd,
// as scripts/incus-up checks), which restarts it after a kill.
func systemdRunsIncus() bool {
	b, err := os.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(b)) == "systemd"
}
