package daemon_test

// incusd unreachable from one worker of the multi-host test bed
// (hosts_test.go; docs/RELIABILITY.md, "incusd unreachable from one
// worker"): that worker takes no job and says so on /readyz, the others
// run them all; when incusd is back it is ready again and takes jobs.

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/run/protocol"
)

// incusdownPage is where each bed daemon serves /readyz, inside its own
// namespace (so the same port on every host, and not the root's ports).
const incusdownPage = "127.0.0.1:18280"

// readyzOn is GET /readyz of the daemon of host h, from h's namespace
// (code 0: no answer, with curl's error).
func readyzOn(h *itest.NetHost) (int, string) {
	out, err := h.Command("curl", "-s", "-m", "5", "-w", "\n%{http_code}", "http://"+incusdownPage+"/readyz").Output()
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	if err != nil || i < 0 {
		return 0, strings.TrimSpace(s + " " + errText(err))
	}
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:i]
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestHostsIncusUnreachable blocks incusd's address from one host only:
// its daemon turns not ready (503 naming incusd) and pulls nothing, the
// two others run every job once; unblocked, it is ready again and runs a
// job. The time from the unblock to ready is logged, never asserted.
func TestHostsIncusUnreachable(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Missing(t, "curl reads /readyz inside a host's namespace: %v", err)
	}
	b := startTestBed(t, 1, "--http-listen", incusdownPage, "--incus-check-every", "1s", "--incus-check-timeout", "2s")
	victim, others := b.hosts[2], b.hosts[:2]
	for _, bh := range b.hosts {
		itest.WaitFor(t, bh.d.name+" ready", time.Minute, func() bool { code, _ := readyzOn(bh.ns); return code == 200 })
	}
	src := b.o.uploadSource(t, makeTarball(t, regEntry("README.md", []byte("# hosts incusd test\n"))))

	b.net.Block(t, victim.ns, b.net.Root)
	blocked := time.Now()
	t.Logf("blocked incusd's relay %s from %s (daemon %s)", b.net.Root, victim.ns.NS, victim.d.name)
	var body string
	itest.WaitFor(t, victim.d.name+"'s /readyz to answer 503 naming incusd", 2*time.Minute, func() bool {
		var code int
		code, body = readyzOn(victim.ns)
		return code == 503 && strings.Contains(body, "not ready: incusd unreachable: ")
	})
	notReady := time.Since(blocked)
	t.Logf("%s: %s", victim.d.name, body)

	var ids []string
	for range 6 {
		id := uuid.NewString()
		ids = append(ids, id)
		b.o.publish(t, protocol.JobSubject("demo-pass"), specWith(t, id, "demo-pass", src, nil), id)
	}
	res := b.o.waitResults(t, ids, 6*time.Minute)
	all := diskRuns(t, b.daemons()...)
	onVictim := diskRuns(t, victim.d)
	ran := map[string]int{}
	for _, id := range ids {
		checkPassed(t, id, res[id])
		checkOneFinal(t, id, res[id], all[id])
		if n := len(onVictim[id]); n > 0 {
			t.Errorf("job %s: %d runs on %s, whose incusd is unreachable", id, n, victim.d.name)
		}
		for _, r := range all[id] {
			ran[r.daemon]++
		}
	}
	t.Logf("runs while %s was blocked: %v", victim.d.name, ran)
	if code, body := readyzOn(victim.ns); code != 503 || !strings.Contains(body, "incusd unreachable") {
		t.Errorf("%s's /readyz after the jobs = %d %q, want 503 naming incusd", victim.d.name, code, body)
	}
	if strings.Count(victim.d.log.String(), "incusd unreachable; taking no jobs") != 1 {
		t.Errorf("%s logged the unreachable incusd %d times, want once:\n%s", victim.d.name,
			strings.Count(victim.d.log.String(), "incusd unreachable; taking no jobs"), victim.d.log.String())
	}

	b.net.Unblock(t, victim.ns, b.net.Root)
	unblocked := time.Now()
	itest.WaitFor(t, victim.d.name+"'s /readyz to answer 200 again", 2*time.Minute, func() bool {
		code, _ := readyzOn(victim.ns)
		return code == 200
	})
	recovery := time.Since(unblocked)

	// It takes jobs again: with incusd blocked from the two others (once
	// they say so), the next job can only run on it.
	for _, bh := range others {
		b.net.Block(t, bh.ns, b.net.Root)
	}
	for _, bh := range others {
		itest.WaitFor(t, bh.d.name+"'s /readyz to answer 503", 2*time.Minute, func() bool { code, _ := readyzOn(bh.ns); return code == 503 })
	}
	id := uuid.NewString()
	b.o.publish(t, protocol.JobSubject("demo-pass"), specWith(t, id, "demo-pass", src, nil), id)
	last := b.o.waitResults(t, []string{id}, 4*time.Minute)[id]
	checkPassed(t, id, last)
	checkOneFinal(t, id, last, diskRuns(t, b.daemons()...)[id])
	if runs := diskRuns(t, victim.d)[id]; len(runs) != 1 {
		t.Errorf("job %s after the unblock: %d runs on %s, want 1", id, len(runs), victim.d.name)
	}
	for _, bh := range others {
		b.net.Unblock(t, bh.ns, b.net.Root)
	}
	if !strings.Contains(victim.d.log.String(), "incusd reachable again; taking jobs") {
		t.Errorf("%s did not log incusd back:\n%s", victim.d.name, victim.d.log.String())
	}
	checkNoInstances(t, b.cl, append(ids, id)...)
	b.o.streamEmpty(t)
	itest.Report(t, "recovery: %s said not ready %.1fs after the block; ready again %.1fs after the unblock (recovery time), and ran job %s",
		victim.d.name, notReady.Seconds(), recovery.Seconds(), id)
}
