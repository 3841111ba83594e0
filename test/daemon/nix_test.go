package daemon_test

// A branch's flake.nix builds in Nix's sandbox as a build user, through
// the nix-daemon (scripts/nix-up, docs/SECURITY.md): a hostile builder
// cannot write the host's /root or /etc, read /etc/shadow or another
// process's environment, reach the daemon's NATS, nor change another
// lane's output in the store.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"jerichoci/model"
)

// hostileAttempts are the attempts the hostile builder records, one line
// "<name> ALLOWED|DENIED" each, in this order. write-store-dir succeeds
// inside the sandbox, whose /nix/store is a private directory holding the
// build's inputs: it is judged from outside (no such file in the host's
// store), as are all writes.
var hostileAttempts = []string{
	"write-root", "write-etc", "read-shadow",
	"read-daemon-env", "read-init-env", "read-any-env",
	"nats-tcp", "write-legit-wrapper", "chmod-legit-wrapper", "write-store-dir",
}

// hostileFlake is the staged fixture's flake.nix whose deps builder first
// tries each of hostileAttempts and records the outcomes in
// $out/lib/attempts. unique names the files it tries to create; the
// secret is split in two so that no environment holds it whole.
func hostileFlake(t *testing.T, unique, secret string, daemonPID, natsPort int, legit string) []byte {
	t.Helper()
	if unique == "" || secret == "" || legit == "" || daemonPID <= 1 || natsPort <= 0 {
		t.Fatalf("hostileFlake: empty argument (unique %q, secret %d bytes, legit %q, pid %d, port %d)", unique, len(secret), legit, daemonPID, natsPort)
	}
	orig, err := os.ReadFile(filepath.Join(stagedFixtureDir(), "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	half := len(secret) / 2
	wrapper := legit + "/bin/run-pika-actionlint"
	attempts := strings.Join([]string{
		"A=$out/lib/attempts",
		"M1=" + secret[:half],
		"M2=" + secret[half:],
		`try() { if eval "$2" >/dev/null 2>&1; then echo "$1 ALLOWED" >> $A; else echo "$1 DENIED" >> $A; fi; }`,
		`try write-root "echo poisoned > /root/` + unique + `"`,
		`try write-etc "echo poisoned > /etc/` + unique + `"`,
		`try read-shadow "grep -q ^root: /etc/shadow"`,
		`try read-daemon-env "grep -q $M1$M2 /proc/` + strconv.Itoa(daemonPID) + `/environ"`,
		`try read-init-env "grep -q $M1$M2 /proc/1/environ"`,
		`try read-any-env "cat /proc/[0-9]*/environ | grep -q $M1$M2"`,
		`try nats-tcp "nc -w 3 127.0.0.1 ` + strconv.Itoa(natsPort) + ` </dev/null | grep -q ^INFO"`,
		`try write-legit-wrapper "echo 'echo poisoned by the hostile lane' >> ` + wrapper + `"`,
		`try chmod-legit-wrapper "chmod u+w ` + wrapper + `"`,
		`try write-store-dir "echo poisoned > /nix/store/` + unique + `-poison && test -e /nix/store/` + unique + `-poison"`,
		"cat $A",
	}, "\n        ")
	const anchor = "        mkdir -p $out/lib\n"
	if n := bytes.Count(orig, []byte(anchor)); n != 1 {
		t.Fatalf("the fixture flake has %d lines %q, want 1 (the deps builder's)", n, anchor)
	}
	return bytes.Replace(orig, []byte(anchor), []byte(anchor+"        "+attempts+"\n"), 1)
}

// hostileTarball is the staged fixture with flake.nix replaced.
func hostileTarball(t *testing.T, hello string, flake []byte) []byte {
	t.Helper()
	dir := stagedFixtureDir()
	var entries []tarEntry
	for _, rel := range []string{"README.md", "jerichoci.lanes.json"} {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, regEntry(rel, b))
	}
	entries = append(entries, regEntry("flake.nix", flake), dirEntry("src"), regEntry("src/hello.txt", []byte(hello)))
	return makeTarball(t, entries...)
}

// realizedPath is the store path a run realized for output.
func realizedPath(t *testing.T, stateRoot, runID, output string) string {
	t.Helper()
	var po struct {
		Outputs []model.RealizedPreparedOutputRecord `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(readText(t, filepath.Join(stateRoot, "runs", runID, "prepared-outputs.json"))), &po); err != nil {
		t.Fatal(err)
	}
	for _, o := range po.Outputs {
		if o.OutputName == output && strings.HasPrefix(o.RealizedPath, "/nix/store/") {
			return o.RealizedPath
		}
	}
	t.Fatalf("run %s realized no %s: %s", runID, output, jsonString(po.Outputs))
	return ""
}

// storeState is what the store says of a path and what its files are.
type storeState struct {
	dbHash, fileHash, verify, wrapper string
}

func nixOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("nix", append([]string{"--extra-experimental-features", "nix-command flakes"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// legitState reads a store path's NAR hash as registered, the hash of
// its files now, `nix-store --verify-path`'s verdict and its wrapper's
// sha256.
func legitState(t *testing.T, p string) storeState {
	t.Helper()
	type pathInfo struct {
		NarHash string `json:"narHash"`
	}
	// An array up to Nix 2.18, an object keyed by store path later
	// (testdata/fixtures/nix/).
	out := []byte(nixOut(t, "path-info", "--store", "daemon", "--json", p))
	var list []pathInfo
	var byPath map[string]pathInfo
	if err := json.Unmarshal(out, &list); err != nil {
		if err := json.Unmarshal(out, &byPath); err != nil {
			t.Fatalf("nix path-info %s printed %s: %v", p, out, err)
		}
		list = append(list, byPath[p])
	}
	if len(list) != 1 || list[0].NarHash == "" {
		t.Fatalf("nix path-info %s printed %s: want the one path's narHash", p, out)
	}
	// Both as SRI (Nix 2.8 registers "sha256-…", older ones "sha256:…").
	s := storeState{dbHash: list[0].NarHash, fileHash: nixOut(t, "hash", "path", "--type", "sha256", "--sri", p)}
	if strings.HasPrefix(s.dbHash, "sha256:") {
		s.dbHash = nixOut(t, "hash", "to-sri", s.dbHash)
	}
	verify := exec.Command("nix-store", "--verify-path", p)
	verify.Env = append(os.Environ(), "NIX_REMOTE=daemon")
	if out, err := verify.CombinedOutput(); err != nil {
		s.verify = "modified: " + strings.TrimSpace(string(out))
	} else {
		s.verify = "ok"
	}
	b, err := os.ReadFile(p + "/bin/run-pika-actionlint")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	s.wrapper = hex.EncodeToString(sum[:])
	return s
}

func TestStagedHostileFlakeIsSandboxed(t *testing.T) {
	cl := require(t)
	requireNix(t)
	// The secret a --secret-env variable of the daemon holds; the builder
	// must not find it in any process's environment.
	secret := "jci-nix-secret-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	t.Setenv("JCI_NIX_TEST_SECRET", secret)
	url := startNATS(t)
	natsPort, err := strconv.Atoi(url[strings.LastIndex(url, ":")+1:])
	if err != nil || !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("NATS url %q: want nats://127.0.0.1:PORT (%v)", url, err)
	}
	d := startDaemon(t, url, "daemon-nix-hostile", stagedFixtureCatalog(), 1,
		"--allow-staged-builds", "--secret-env", "JCI_NIX_TEST_SECRET")
	o := newOrchestrator(t, url)
	const (
		buildOutput = "ci.x86_64-linux.pikaFollowupWorkspaceBuild"
		depsOutput  = "ci.x86_64-linux.pikaFollowupWorkspaceDeps"
	)

	// What the hostile builder aims at on the host, all named for this test
	// alone; whatever it manages to create there is removed again.
	unique := "jci-hostile-" + uuid.NewString()
	hostPaths := []string{"/root/" + unique, "/etc/" + unique, "/nix/store/" + unique + "-poison"}
	t.Cleanup(func() {
		for _, p := range hostPaths {
			_ = os.Remove(p) // one file of this test's name: never a directory, never a glob
		}
	})

	legitHello := uniqueHello(t)
	legitSrc := o.uploadSource(t, stagedFixtureTarball(t, legitHello))
	var ids []string
	runLegit := func(when string, reused bool) model.RunRecord {
		t.Helper()
		id := o.enqueue(t, "pika-actionlint", legitSrc)
		ids = append(ids, id)
		res := o.waitResults(t, []string{id}, 15*time.Minute)[id]
		t.Logf("legit lane %s: run %s %s %q", when, res.RunID, res.Status, model.Value(res.Message))
		if res.Status != model.StatusPassed {
			t.Fatalf("legit lane %s: run %s %q, want passed; jobs %s", when, res.Status, model.Value(res.Message), jsonString(res.Jobs))
		}
		checkJob(t, id, jobOf(t, id, res, "pika-actionlint"), model.StatusPassed, "test passed", i32(0))
		sdir := jobDir(d.stateRoot, res.RunID, "pika-actionlint")
		guest := readText(t, filepath.Join(sdir, "artifacts", "guest.log"))
		checkContains(t, "legit "+when+" guest.log", guest, "wrapper run-pika-actionlint", strings.TrimSpace(legitHello), "staged wrapper passed")
		if strings.Contains(guest, "poisoned") {
			t.Errorf("legit lane %s ran a poisoned wrapper:\n%s", when, guest)
		}
		host := readText(t, filepath.Join(sdir, "host.log"))
		if got := strings.Contains(host, "staged Linux Rust output "+buildOutput+" was already in the Nix store; nothing was built"); got != reused {
			t.Errorf("legit lane %s: reused its build output = %v, want %v:\n%s", when, got, reused, grepLines(host, "staged Linux Rust output"))
		}
		return res
	}

	before := runLegit("before", false)
	legit := realizedPath(t, d.stateRoot, before.RunID, buildOutput)
	stateBefore := legitState(t, legit)
	if stateBefore.dbHash != stateBefore.fileHash || stateBefore.verify != "ok" {
		t.Fatalf("legit %s before the hostile build: %+v, want its files to match the store's hash", legit, stateBefore)
	}

	// The hostile lane: same target, a source whose deps builder attacks.
	flake := hostileFlake(t, unique, secret, d.cmd.Process.Pid, natsPort, legit)
	hid := o.enqueue(t, "pika-actionlint", o.uploadSource(t, hostileTarball(t, uniqueHello(t), flake)))
	hres := o.waitResults(t, []string{hid}, 15*time.Minute)[hid]
	t.Logf("hostile lane: run %s %s %q", hres.RunID, hres.Status, model.Value(hres.Message))
	hostileDeps := realizedPath(t, d.stateRoot, hres.RunID, depsOutput)
	attempts := readText(t, filepath.Join(hostileDeps, "lib", "attempts"))
	t.Logf("the hostile builder's attempts (%s):\n%s", hostileDeps, attempts)
	lines := strings.Split(strings.TrimSpace(attempts), "\n")
	if len(lines) != len(hostileAttempts) {
		t.Errorf("%d attempts recorded, want %d (%q)", len(lines), len(hostileAttempts), hostileAttempts)
	}
	for i, name := range hostileAttempts {
		if name == "write-store-dir" && i < len(lines) && strings.HasPrefix(lines[i], name+" ") {
			continue // judged from outside, below
		}
		if i >= len(lines) || lines[i] != name+" DENIED" {
			got := "nothing"
			if i < len(lines) {
				got = strconv.Quote(lines[i])
			}
			t.Errorf("attempt %s: recorded %s, want %q", name, got, name+" DENIED")
		}
	}

	// From outside: nothing was created, the secret went nowhere, the legit
	// output is the one the store registered.
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("the hostile builder created %s", p)
		}
	}
	hostileDir := jobDir(d.stateRoot, hres.RunID, "pika-actionlint")
	for _, f := range []string{filepath.Join(hostileDir, "host.log"), filepath.Join(hostileDir, "artifacts", "guest.log"), filepath.Join(hostileDeps, "lib", "attempts")} {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the daemon's secret", f)
		}
	}
	if strings.Contains(d.log.String(), secret) {
		t.Errorf("the daemon's log holds its secret")
	}
	if after := legitState(t, legit); after != stateBefore {
		t.Errorf("legit %s changed: before %+v, after %+v", legit, stateBefore, after)
	}

	after := runLegit("after", true)
	if p := realizedPath(t, d.stateRoot, after.RunID, buildOutput); p != legit {
		t.Errorf("legit lane after: build output %s, want %s", p, legit)
	}
	o.streamEmpty(t)
	checkNoInstances(t, cl, append(ids, hid)...)
}
