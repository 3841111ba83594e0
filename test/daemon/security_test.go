package daemon_test

// The daemon's safety promises: uploaded sources cannot write outside
// their tree nor bring links or devices in, host paths are opt-in and
// keep their permissions, the embedded NATS needs a password and guests
// cannot reach it nor incusd, a job's output does not grow the daemon, a
// record too large for the results bucket is stored whole elsewhere, a
// full disk fails the job and not the daemon, and cancels stay tidy.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// msgSourceRefused starts the message of a job whose source is refused.
const msgSourceRefused = "source refused: "

func TestHostileSourceTarballsAreRefused(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	d := startDaemon(t, url, "daemon-a", cat, 2)
	o := newOrchestrator(t, url)

	// What the tarballs aim at: a decoy directory with a file, two paths
	// under /tmp that must never appear, and /etc/hostname.
	outside := t.TempDir()
	decoy := filepath.Join(outside, "decoy")
	decoyFile := filepath.Join(decoy, "secret.txt")
	if err := os.MkdirAll(filepath.Join(decoy, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(decoyFile, []byte("decoy content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	absTarget := "/tmp/jerichoci-escape-abs-" + uuid.NewString()
	upTarget := "/tmp/jerichoci-escape-up-" + uuid.NewString()
	t.Cleanup(func() { _ = os.RemoveAll(absTarget); _ = os.RemoveAll(upTarget) })
	const hostFile = "/etc/hostname"
	hostContent, hostErr := os.ReadFile(hostFile)
	if hostErr == nil {
		// Should an extraction write through a hard link, put it back.
		t.Cleanup(func() {
			if b, err := os.ReadFile(hostFile); err == nil && !bytes.Equal(b, hostContent) {
				_ = os.WriteFile(hostFile, hostContent, 0o644)
			}
		})
	}
	watched := func() map[string]fileState {
		m := listTree(t, outside)
		if hostErr == nil {
			for p, s := range listTree(t, hostFile) {
				m[p] = s
			}
		}
		return m
	}
	before := watched()

	readme := regEntry("README.md", []byte("# hostile source\n"))
	pwned := []byte("pwned\n")

	// d -> . is in the tree, and so is each e<i> -> e<i-1>/.. by its
	// spelling ("."), but the kernel resolves d, then "..": each link
	// climbs one directory, up to /, then the last entry walks down to
	// the decoy.
	chain := []tarEntry{readme, symlinkEntry("d", ".")}
	chainNames := []string{"d"}
	prev := "d"
	for i := 1; i <= 24; i++ {
		n := fmt.Sprintf("e%d", i)
		chain = append(chain, symlinkEntry(n, prev+"/.."))
		chainNames = append(chainNames, n)
		prev = n
	}
	chainFile := prev + decoy + "/pwned-by-chain"
	chain = append(chain, regEntry(chainFile, pwned))
	chainNames = append(chainNames, chainFile)

	up := strings.TrimSuffix(strings.Repeat("../", 30), "/")
	upFile := "up" + upTarget // up/tmp/jerichoci-escape-up-…

	cases := []struct {
		name      string
		entries   []tarEntry
		offending []string // the message names one of them in double quotes
		want      []string // and contains each of these
	}{
		{"symlink to a host directory", []tarEntry{readme, symlinkEntry("esc", decoy), regEntry("esc/pwned-by-esc", pwned)},
			[]string{"esc", "esc/pwned-by-esc"}, nil},
		{"symlink chain climbing out", chain, chainNames, nil},
		{"absolute symlink", []tarEntry{readme, symlinkEntry("abs", absTarget), regEntry("abs/pwned", pwned)},
			[]string{"abs", "abs/pwned"}, nil},
		{"dot-dot symlink", []tarEntry{readme, symlinkEntry("up", up), regEntry(upFile, pwned)},
			[]string{"up", upFile}, nil},
		{"hard link to a host file", []tarEntry{readme, hardlinkEntry("h", decoyFile), regEntry("h", pwned)},
			[]string{"h"}, []string{"hard links are not accepted"}},
		{"hard link to " + hostFile, []tarEntry{readme, hardlinkEntry("hn", hostFile), regEntry("hn", pwned)},
			[]string{"hn"}, []string{"hard links are not accepted"}},
		{"character device", []tarEntry{readme, dirEntry("dev"), deviceEntry(tar.TypeChar, "dev/null", 1, 3)},
			[]string{"dev/null"}, []string{"character devices are not accepted"}},
		{"block device", []tarEntry{readme, dirEntry("dev"), deviceEntry(tar.TypeBlock, "dev/sda", 8, 0)},
			[]string{"dev/sda"}, []string{"block devices are not accepted"}},
		{"fifo", []tarEntry{readme, fifoEntry("fifo")},
			[]string{"fifo"}, []string{"not accepted"}},
	}
	tarballs := make([][]tarEntry, len(cases))
	for i, tc := range cases {
		tarballs[i] = tc.entries
	}
	ids, results, runs := o.runTarballs(t, d, "demo-pass", tarballs, 3*time.Minute)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := ids[i]
			checkRefused(t, id, results[id], msgSourceRefused, tc.offending, tc.want...)
			checkOneDelivery(t, id, runs[id])
			checkOneFinal(t, id, results[id], runs[id])
			t.Logf("message: %s", model.Value(results[id].Message))
		})
	}
	for _, diff := range diffTrees(before, watched()) {
		t.Errorf("outside the state root: %s", diff)
	}
	for _, p := range []string{absTarget, upTarget} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists after the jobs (%v): a tarball wrote outside its tree", p, err)
		}
	}
	checkNoInstances(t, cl, ids...)
}

func TestSourceLimitsRefuseTooLargeSources(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	d := startDaemon(t, url, "daemon-a", cat, 2, "--max-source-bytes", "1MiB", "--max-source-entries", "100")
	o := newOrchestrator(t, url)
	readme := regEntry("README.md", []byte("# limits\n"))
	random := make([]byte, 3<<19) // 1.5 MiB that gzip cannot shrink
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	many := []tarEntry{readme}
	for i := 0; i < 150; i++ {
		many = append(many, regEntry(fmt.Sprintf("f/%03d.txt", i), []byte("x\n")))
	}
	cases := []struct {
		name    string
		entries []tarEntry
		refused bool
		want    []string
	}{
		{"unpacks past --max-source-bytes", []tarEntry{readme, regEntry("zeros.bin", make([]byte, 3<<20))}, true,
			[]string{"--max-source-bytes"}},
		{"object past --max-source-bytes", []tarEntry{readme, regEntry("random.bin", random)}, true,
			[]string{"--max-source-bytes"}},
		{"more entries than --max-source-entries", many, true, []string{"--max-source-entries"}},
		{"within the limits", []tarEntry{readme, regEntry("small.txt", []byte("small\n"))}, false, nil},
	}
	tarballs := make([][]tarEntry, len(cases))
	for i, tc := range cases {
		tarballs[i] = tc.entries
	}
	ids, results, runs := o.runTarballs(t, d, "demo-pass", tarballs, 4*time.Minute)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := ids[i]
			if tc.refused {
				checkRefused(t, id, results[id], strings.TrimSpace(msgSourceRefused), nil, tc.want...)
			} else {
				checkPassed(t, id, results[id])
			}
			checkOneDelivery(t, id, runs[id])
			checkOneFinal(t, id, results[id], runs[id])
			t.Logf("%s: %s", results[id].Status, model.Value(results[id].Message))
		})
	}
	checkNoInstances(t, cl, ids...)
}

func TestHostPathSourcesAreRefusedWithoutHostPathRoot(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	d := startDaemon(t, url, "daemon-a", cat, 1, noHostPathRoot)
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
	res := o.waitResults(t, []string{id}, 2*time.Minute)[id]
	o.streamEmpty(t)
	if res.Status != model.StatusFailed || !strings.Contains(model.Value(res.Message), "host_path sources are refused") {
		t.Errorf("result %s %q, want failed with \"host_path sources are refused\"", res.Status, model.Value(res.Message))
	}
	checkOneFinal(t, id, res, diskRuns(t, d)[id])
	checkNoInstances(t, cl, id)
}

func TestHostPathSnapshotIsNoMoreReadableThanItsSource(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "snapshot-ok", Command: "echo snapshot ok"})
	d := startDaemon(t, url, "daemon-a", cat, 1, "--host-path-root", "/")
	o := newOrchestrator(t, url)
	const src = "/etc"
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("snapshot-ok"), specWith(t, id, "snapshot-ok", hostPathSource(src), nil), id)
	res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
	o.streamEmpty(t)
	checkPassed(t, id, res)
	checkOneFinal(t, id, res, diskRuns(t, d)[id])
	checkNoInstances(t, cl, id)

	snap := filepath.Join(d.stateRoot, "runs", res.RunID, "snapshot")
	compared, loosened := 0, 0
	err := filepath.WalkDir(snap, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(snap, p)
		if err != nil {
			return err
		}
		cp, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !cp.Mode().IsRegular() && !cp.IsDir() {
			return nil
		}
		orig, err := os.Lstat(filepath.Join(src, rel))
		if err == nil && orig.Mode()&fs.ModeSymlink != 0 {
			orig, err = os.Stat(filepath.Join(src, rel)) // a snapshot may copy what a link points to
		}
		if err != nil || orig.IsDir() != cp.IsDir() {
			return nil // not (or no longer) the same kind of thing in the source
		}
		compared++
		if extra := cp.Mode().Perm() &^ orig.Mode().Perm(); extra != 0 {
			loosened++
			if loosened <= 20 {
				t.Errorf("snapshot %s is %v, its source %s is %v: the copy adds %v", rel, cp.Mode().Perm(),
					filepath.Join(src, rel), orig.Mode().Perm(), extra)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the snapshot %s: %v", snap, err)
	}
	t.Logf("compared %d files and directories of %s, %d more readable than their source", compared, snap, loosened)
	if compared < 10 {
		t.Errorf("the snapshot %s holds %d of %s's files and directories, want a copy of it", snap, compared, src)
	}
}

func TestEmbeddedNATSRequiresAuthentication(t *testing.T) {
	require(t)
	parent := t.TempDir()
	stateRoot := filepath.Join(parent, ".pikaci")
	if err := os.WriteFile(filepath.Join(parent, "README.md"), []byte("# embedded\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cat := filepath.Join(parent, "jerichoci.lanes.json")
	if err := os.WriteFile(cat, []byte(testCatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	_, c := startEmbeddedDaemon(t, "daemon-e", cat, stateRoot, itest.FreePort(t))

	if nc, err := nats.Connect(c.URL, nats.Timeout(5*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Errorf("an anonymous client connected to the embedded server at %s", c.URL)
	}
	if nc, err := nats.Connect(c.URL, nats.UserInfo(c.User, c.Password+"x"), nats.Timeout(5*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Errorf("a wrong password connected to the embedded server at %s", c.URL)
	}
	// enqueue with no NATS flags finds the server and its password through
	// the default state root ./.pikaci.
	cmd := exec.Command(jciBin, "enqueue", "demo-pass", "--wait", "--timeout", "4m")
	cmd.Dir, cmd.Env = parent, itest.CleanEnv()
	code, out := exitCode(t, cmd)
	if code != 0 {
		t.Fatalf("enqueue --wait against the embedded server exited %d:\n%s", code, out)
	}
	first := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if len(first) < 2 || first[0] != "job" {
		t.Fatalf("enqueue output does not start with the job id:\n%s", out)
	}
	// The client reads records with direct gets only (docs/PROTOCOL.md).
	nc, err := nats.Connect(c.URL, nats.UserInfo(c.User, c.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client, err := protocol.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Result(t.Context(), first[1])
	if err != nil || res == nil {
		t.Fatalf("no final record of job %s after enqueue --wait (%v):\n%s", first[1], err, out)
	}
	checkPassed(t, first[1], *res)
}

func TestServeRefusesNonLoopbackNATSListenWithoutTLS(t *testing.T) {
	requireBinaries(t)
	cat := writeCatalog(t)
	port := itest.FreePort(t)
	cmd := exec.Command(jciBin, "serve", "--state-root", t.TempDir(), "--catalog", cat,
		"--nats-listen", fmt.Sprintf("0.0.0.0:%d", port))
	cmd.Env = itest.CleanEnv()
	var out itest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("serve --nats-listen 0.0.0.0:%d kept running; want exit 2:\n%s", port, itest.Tail(out.String(), 30))
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("serve --nats-listen 0.0.0.0:%d exited %d, want 2:\n%s", port, code, out.String())
	}
	if !strings.Contains(out.String(), "--nats-insecure-listen") {
		t.Errorf("serve's refusal does not name --nats-insecure-listen:\n%s", out.String())
	}
}

func TestGuestCannotReachNATSOrIncus(t *testing.T) {
	cl := require(t)
	parent := t.TempDir()
	port := itest.FreePort(t)
	bridge := guestBridge(t, cl)
	// The probe never spells the marker word, so a log that quotes the
	// command cannot contain it. The runner image does not configure its
	// network: a root job can, so the probe asks the jobs' bridge for a
	// lease (udhcpc, with dhcpScript of guestnet_test.go) and checks that it
	// reaches the bridge's DNS (control: the probe itself works).
	probe := fmt.Sprintf(`r=REA; r="${r}CHED"; hit=0
cat > /root/dhcp.sh <<'EOS'
%[3]sEOS
chmod 755 /root/dhcp.sh
ip link set eth0 up; udhcpc -i eth0 -n -q -t 60 -T 1 -s /root/dhcp.sh 2>&1
ip -4 addr show 2>/dev/null; ip -4 route show 2>/dev/null
if timeout 3 bash -c "exec 3<>/dev/tcp/%[2]s/53" 2>/dev/null; then echo "control: bridge reachable"; else echo "control: bridge unreachable"; fi
gw=; set -- $(ip route show default 2>/dev/null); [ "${1:-}" = default ] && gw="${3:-}"
echo "gateway ${gw:-none}"
for h in $gw %[2]s; do
  for p in %[1]d 8443; do
    if timeout 3 bash -c "exec 3<>/dev/tcp/$h/$p" 2>/dev/null; then echo "$r tcp $h:$p"; hit=1; else echo "closed $h:$p"; fi
  done
done
for f in /var/lib/incus/unix.socket /dev/incus; do
  if [ -e "$f" ]; then echo "$r $f"; hit=1; else echo "absent $f"; fi
done
exit $hit`, port, bridge, dhcpScript)
	cat := writeCatalogWith(t, catalogJob{Target: "probe-host", Command: probe, AsRoot: true})
	// The daemon's own NATS, on the host whose bridge address is the
	// guest's gateway: the guest must not reach it there.
	d, c := startEmbeddedDaemon(t, "daemon-e", cat, filepath.Join(parent, ".pikaci"), port)
	o := newEmbeddedOrchestrator(t, filepath.Join(parent, ".pikaci"), c)
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("probe-host"), o.spec(id, "probe-host"), id)
	res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
	o.streamEmpty(t)
	dir := jobDir(d.stateRoot, res.RunID, "job")
	hostLog, _ := os.ReadFile(filepath.Join(dir, "host.log"))
	guestLog, _ := os.ReadFile(filepath.Join(dir, "artifacts", "guest.log"))
	t.Logf("guest log:\n%s", guestLog)
	if res.Status != model.StatusPassed {
		t.Errorf("probe result %s %q, want passed: something answered from the guest", res.Status, model.Value(res.Message))
	}
	for name, b := range map[string][]byte{"host.log": hostLog, "guest.log": guestLog} {
		if bytes.Contains(b, []byte("REACHED")) {
			t.Errorf("%s says the guest reached the host:\n%s", name, b)
		}
	}
	if want := fmt.Sprintf("closed %s:%d", bridge, port); !bytes.Contains(guestLog, []byte(want)) {
		t.Errorf("guest.log lacks %q: the probe did not run", want)
	}
	if !bytes.Contains(guestLog, []byte("control: bridge reachable")) {
		t.Errorf("the guest did not reach the bridge's DNS (%s:53) either: the probe's network never came up, so its closed ports prove nothing", bridge)
	}
	checkNoInstances(t, cl, id)
}

// guestBridge returns the host's address on the jobs' bridge
// (executor.DefaultGuestNetwork, the default --guest-network): the
// guests' gateway, where the host's listeners would answer them.
func guestBridge(t *testing.T, cl *incus.Client) string {
	t.Helper()
	n, err := cl.GetNetwork(t.Context(), guestNet)
	if err != nil {
		t.Fatal(err)
	}
	pfx, err := netip.ParsePrefix(n.Config["ipv4.address"])
	if err != nil || !pfx.Addr().Is4() {
		t.Fatalf("network %s: ipv4.address %q, want an IPv4 subnet", guestNet, n.Config["ipv4.address"])
	}
	return pfx.Addr().String()
}

func TestOneGiBOfOutputKeepsTheDaemonSmall(t *testing.T) {
	checkOutputKeepsDaemonSmall(t, "yes 0123456789abcdef | head -c 1073741824", 1<<30, "0123456789abcdef\n", 9*time.Minute)
}

func TestOneLongLineKeepsTheDaemonSmall(t *testing.T) {
	checkOutputKeepsDaemonSmall(t, `head -c 100000000 /dev/zero | tr '\0' a`, 100_000_000, "a", 5*time.Minute)
}

func TestOversizedRunRecordIsStoredWhole(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	d := startDaemon(t, url, "daemon-a", cat, 1)
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	spec := func(files []string) []byte {
		return specWith(t, id, "demo-pass", hostPathSource(o.src), map[string]any{"changed_files": files})
	}
	// Just under the server's 1 MiB max payload with the Nats-Msg-Id
	// header; the run record adds ~2 KB to it, past the results bucket's
	// 1 MiB value limit.
	files := oversizedChangedFiles(t, 1_048_000, spec)
	data := spec(files)
	if _, err := model.ParseJobSpec(data); err != nil {
		t.Fatalf("the spec does not decode: %v", err)
	}
	t.Logf("spec: %d bytes, %d changed files", len(data), len(files))
	o.publish(t, protocol.JobSubject("demo-pass"), data, id)
	res := o.waitResults(t, []string{id}, 4*time.Minute)[id]
	o.streamEmpty(t)
	runs := diskRuns(t, d)[id]
	checkOneDelivery(t, id, runs)
	checkOneFinal(t, id, res, runs)
	checkPassed(t, id, res)
	if n := kvHistory(t, o.results, id); n != 1 {
		t.Errorf("%d values of %s in %s, want 1", n, id, protocol.BucketResults)
	}
	e, err := o.results.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("KV value: %d bytes", len(e.Value()))
	var ptr struct {
		Record *jerichociRecord `json:"jerichoci_record"`
	}
	if err := json.Unmarshal(e.Value(), &ptr); err != nil || ptr.Record == nil {
		t.Fatalf("the KV value has no jerichoci_record (%v): %.300s…", err, e.Value())
	}
	want := jerichociRecord{Trimmed: true, Bucket: "jerichoci-records", Object: id + ".json", Bytes: ptr.Record.Bytes}
	if *ptr.Record != want || want.Bytes <= 0 {
		t.Errorf("jerichoci_record = %+v, want %+v with the record's size", *ptr.Record, want)
	}
	obs, err := o.js.ObjectStore(t.Context(), "jerichoci-records")
	if err != nil {
		t.Fatalf("object store jerichoci-records: %v", err)
	}
	whole, err := obs.GetBytes(t.Context(), id+".json")
	if err != nil {
		t.Fatalf("jerichoci-records %s.json: %v", id, err)
	}
	if int64(len(whole)) != ptr.Record.Bytes {
		t.Errorf("the stored record is %d bytes, jerichoci_record says %d", len(whole), ptr.Record.Bytes)
	}
	if len(whole) <= 1<<20 {
		t.Errorf("the whole record is %d bytes, not over the 1 MiB value limit: the test needs a bigger spec", len(whole))
	}
	var full model.RunRecord
	if err := json.Unmarshal(whole, &full); err != nil {
		t.Fatalf("the stored record does not decode: %v", err)
	}
	if full.RunID != res.RunID || full.Status != res.Status {
		t.Errorf("the stored record is run %s %s, the KV value run %s %s", full.RunID, full.Status, res.RunID, res.Status)
	}
	checkPassed(t, id, full)
	if !slices.Equal(full.ChangedFiles, files) {
		t.Errorf("the stored record has %d changed files, want the spec's %d", len(full.ChangedFiles), len(files))
	}
	checkNoInstances(t, cl, id)
}

func TestFullStateRootFailsTheJobAndKeepsTheDaemon(t *testing.T) {
	cl := require(t)
	dir := mountFullTmpfs(t)

	url := startNATS(t)
	cat := writeCatalog(t)
	d := startDaemon(t, url, "daemon-a", cat, 1, "--state-root", dir, "--max-deliver", "2", "--retry-delay", "200ms")
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	o.publish(t, protocol.JobSubject("demo-pass"), o.spec(id, "demo-pass"), id)
	res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
	if res.Status != model.StatusFailed || !strings.Contains(model.Value(res.Message), "no space left on device") {
		t.Errorf("result %s %q, want failed with \"no space left on device\"", res.Status, model.Value(res.Message))
	}
	o.streamEmpty(t)
	if n := kvHistory(t, o.results, id); n != 1 {
		t.Errorf("%d values of %s in %s, want 1", n, id, protocol.BucketResults)
	}
	time.Sleep(time.Second)
	select {
	case <-d.done:
		t.Errorf("the daemon exited (%v) on a full state root", d.cmd.ProcessState)
	default:
		if err := d.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("the daemon is gone: %v", err)
		}
	}
	checkNoInstances(t, cl, id)
}

func TestCancelRefusesAJobIDThatIsNotALowercaseUUID(t *testing.T) {
	requireBinaries(t)
	// Nothing listens there: the id must be refused before any connection.
	cmd := exec.Command(jciBin, "cancel", "not-a-uuid")
	cmd.Env = append(itest.CleanEnv(), fmt.Sprintf("JERICHOCI_NATS_URL=nats://127.0.0.1:%d", itest.FreePort(t)))
	code, out := exitCode(t, cmd)
	if code != 2 {
		t.Errorf("cancel not-a-uuid exited %d, want 2:\n%s", code, out)
	}
	if !strings.Contains(out, "not-a-uuid") || !strings.Contains(out, "lowercase UUID") {
		t.Errorf("cancel not-a-uuid does not name the id and the lowercase UUID it expects:\n%s", out)
	}
}

func TestCancelOfAnUnseenJobExpires(t *testing.T) {
	require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	startDaemon(t, url, "daemon-a", cat, 1, "--precancel-ttl", "2s", "--keep-results", "1h")
	o := newOrchestrator(t, url)
	checkBucketTTL(t, o, time.Hour)

	id := uuid.NewString()
	// The claim lives 2 s: watch for it from before the cancel, so that a
	// slow machine cannot let it expire before the test reads it.
	w, err := o.jobs.Watch(t.Context(), id, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	cmd := exec.Command(jciBin, "cancel", id)
	cmd.Env = append(itest.CleanEnv(), "JERICHOCI_NATS_URL="+url)
	code, out := exitCode(t, cmd)
	// Nothing knows the id (issue #23): said so, exit 2; the cancel is
	// kept all the same, should the job be published within the TTL.
	if code != 2 || !strings.Contains(out, "unknown job") {
		t.Errorf("cancel of an unseen job exited %d, want 2 saying it is unknown:\n%s", code, out)
	}
	select {
	case e := <-w.Updates():
		var c protocol.Claim
		if e == nil || e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &c) != nil || c.State != protocol.ClaimCancelled {
			t.Errorf("first change of the claim after the cancel = %v, want a put of a cancelled claim", e)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("no claim written for the cancelled job")
	}
	waitKeyGone(t, o.jobs, id, 30*time.Second)
	if r := o.result(t, id); r != nil {
		t.Errorf("a final record for a job nobody published: %s %q", r.Status, model.Value(r.Message))
	}
}

// TestKeepRunsPrunesOldRunDirectories: with --keep-runs 2 the daemon keeps
// the 2 run directories whose ids sort last (ids start with their second,
// so the newest, the original's rule) and removes the others; the final
// records stay. Which two is computed from the run ids the jobs got, so
// jobs that share a second change nothing.
func TestKeepRunsPrunesOldRunDirectories(t *testing.T) {
	require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	d := startDaemon(t, url, "daemon-a", cat, 1, "--keep-runs", "2")
	o := newOrchestrator(t, url)
	// Specs that cannot run still get a run directory each, and no instance.
	var ids []string
	runOf := map[string]string{}
	for i := 0; i < 4; i++ {
		id := uuid.NewString()
		ids = append(ids, id)
		o.publish(t, protocol.JobSubject("nope"), specWith(t, id, "nope", hostPathSource(o.src), nil), id)
		o.waitResults(t, []string{id}, time.Minute)
		r := o.result(t, id)
		if r == nil || r.RunID == "" {
			t.Fatalf("job %d of 4 (%s): no final record with a run id", i+1, id)
		}
		runOf[id] = r.RunID
	}
	o.streamEmpty(t)
	runIDs := slices.Sorted(maps.Values(runOf))
	newest := runIDs[len(runIDs)-2:]
	itest.WaitFor(t, "the daemon to keep only the 2 newest run directories", 30*time.Second, func() bool {
		dirs, _ := filepath.Glob(filepath.Join(d.stateRoot, "runs", "*"))
		return len(dirs) == 2
	})
	for i, id := range ids {
		_, err := os.Stat(filepath.Join(d.stateRoot, "runs", runOf[id]))
		kept, want := err == nil, slices.Contains(newest, runOf[id])
		if kept != want {
			t.Errorf("job %d of 4 (%s, run %s): run directory kept %v, want %v (the newest are %q)", i+1, id, runOf[id], kept, want, newest)
		}
		if o.result(t, id) == nil {
			t.Errorf("job %s: its final record went with its run directory", id)
		}
	}
}

// TestGzipBombStopsAtTheLimit uploads 256 MiB of zeros that gzip packs
// into well under a megabyte: the daemon refuses it at --max-source-bytes
// with the limit in the message, and the state root never holds much more
// than the limit while it unpacks (sampled throughout).
func TestGzipBombStopsAtTheLimit(t *testing.T) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalog(t)
	const limit = 16 << 20
	d := startDaemon(t, url, "daemon-a", cat, 1, "--max-source-bytes", "16MiB")
	o := newOrchestrator(t, url)
	bomb := gzipBomb(t, 256<<20)
	t.Logf("bomb: %d bytes of gzip for 256 MiB", len(bomb))
	id := uuid.NewString()
	src := o.uploadSource(t, bomb)
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := treeSize(d.stateRoot); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	o.publish(t, protocol.JobSubject("demo-pass"), specWith(t, id, "demo-pass", src, nil), id)
	res := o.waitResults(t, []string{id}, 3*time.Minute)[id]
	close(stop)
	<-sampled
	o.streamEmpty(t)
	checkRefused(t, id, res, strings.TrimSpace(msgSourceRefused), nil, "--max-source-bytes", strconv.Itoa(limit))
	checkOneDelivery(t, id, diskRuns(t, d)[id])
	t.Logf("message: %s; state root peak %s while unpacking (limit %s)", model.Value(res.Message), mib(peak.Load()), mib(limit))
	if peak.Load() > limit+8<<20 {
		t.Errorf("the state root held %s while unpacking a bomb, more than the limit %s + 8 MiB", mib(peak.Load()), mib(limit))
	}
	checkNoInstances(t, cl, id)
}

// gzipBomb is a source tarball with one file of n zero bytes, streamed
// through gzip so that n never sits in memory.
func gzipBomb(t *testing.T, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	readme := []byte("# bomb\n")
	for _, h := range []*tar.Header{{Name: "README.md", Mode: 0o644, Size: int64(len(readme))}, {Name: "zeros.bin", Mode: 0o644, Size: n}} {
		h.Typeflag = tar.TypeReg
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		var body io.Reader = bytes.NewReader(readme)
		if h.Name == "zeros.bin" {
			body = io.LimitReader(zeroReader{}, n)
		}
		if _, err := io.Copy(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// treeSize adds up the sizes of the regular files below dir (errors, such
// as files removed while walking, are skipped).
func treeSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
