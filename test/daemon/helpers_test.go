package daemon_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/executor/incus"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// requireBinaries skips (or fails in CI) when jerichoci or nats-server
// could not be built; for tests that need no incusd.
func requireBinaries(t *testing.T) {
	t.Helper()
	testenv.Needs(t, "bin/nats-server and a jerichoci build")
	if setupError != nil {
		msg := "needs bin/nats-server and a jerichoci build: " + setupError.Error()
		testenv.Missing(t, "%s", msg)
	}
}

// catalogJob is one single-job target of a test catalog.
type catalogJob struct {
	Target  string // target id; the job id is "job"
	Command string
	AsRoot  bool // shell_as_root instead of shell (uid 1000)
	Timeout int  // seconds; 0 is 120
	// SecretEnv is the job's secret_env.
	SecretEnv []string
}

// writeCatalogWith writes testCatalog's targets plus jobs to a file.
func writeCatalogWith(t *testing.T, jobs ...catalogJob) string {
	t.Helper()
	var cat map[string]any
	if err := json.Unmarshal([]byte(testCatalog), &cat); err != nil {
		t.Fatal(err)
	}
	targets := cat["targets"].([]any)
	for _, j := range jobs {
		kind := "shell"
		if j.AsRoot {
			kind = "shell_as_root"
		}
		timeout := j.Timeout
		if timeout == 0 {
			timeout = 120
		}
		job := map[string]any{
			"id": "job", "description": "test job", "timeout_secs": timeout,
			"command": map[string]any{"kind": kind, "command": j.Command},
			"runtime": map[string]any{"kind": "incus", "incus": map[string]any{"guest_role": "pikaci-runner"}},
		}
		if len(j.SecretEnv) > 0 {
			job["secret_env"] = j.SecretEnv
		}
		targets = append(targets, map[string]any{
			"id": j.Target, "description": "test target " + j.Target, "jobs": []any{job},
		})
	}
	cat["targets"] = targets
	b, err := json.MarshalIndent(cat, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tarEntry is one entry of a crafted tarball: a header and, for regular
// files, its content (Size is set from it).
type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func regEntry(name string, body []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, body: body}
}

func dirEntry(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimSuffix(name, "/") + "/", Mode: 0o755}}
}

func symlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

func deviceEntry(typeflag byte, name string, major, minor int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: typeflag, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor}}
}

func fifoEntry(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o644}}
}

// makeTarball writes the entries, in order and as given (duplicates,
// links and devices included), as a gzipped tarball.
func makeTarball(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	epoch := time.Unix(0, 0).UTC()
	for _, e := range entries {
		h := e.hdr
		h.ModTime, h.Format = epoch, tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar entry %q: %v", h.Name, err)
		}
		if len(e.body) > 0 {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatalf("tar entry %q: %v", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sourceRef is the spec's object_store source of an uploaded tarball.
type sourceRef struct {
	Kind   string `json:"kind"`
	Bucket string `json:"bucket"`
	Object string `json:"object"`
	SHA256 string `json:"sha256"`
}

// uploadSource stores tarball in the sources object store under its
// content-addressed name, as `jerichoci enqueue` does.
func (o *orchestrator) uploadSource(t *testing.T, tarball []byte) sourceRef {
	t.Helper()
	sum := sha256.Sum256(tarball)
	hexSum := hex.EncodeToString(sum[:])
	if o.client != nil {
		ref, err := o.client.UploadSource(t.Context(), bytes.NewReader(tarball), hexSum, "test")
		if err != nil {
			t.Fatalf("upload %d bytes: %v", len(tarball), err)
		}
		return sourceRef{Kind: "object_store", Bucket: ref.Bucket, Object: ref.Object, SHA256: ref.SHA256}
	}
	obs, err := o.js.ObjectStore(t.Context(), protocol.BucketSources)
	if err != nil {
		t.Fatal(err)
	}
	name := protocol.SourceObjectName(hexSum)
	if _, err := obs.PutBytes(t.Context(), name, tarball); err != nil {
		t.Fatalf("put %s (%d bytes): %v", name, len(tarball), err)
	}
	return sourceRef{Kind: "object_store", Bucket: protocol.BucketSources, Object: name, SHA256: hexSum}
}

// specWith is a job spec with the given source (and extra fields).
// runTarballs uploads each tarball as the source of one demo job, waits
// for every final record and for the work stream to empty, and returns the
// job ids (in order), their results and the daemon's run directories.
func (o *orchestrator) runTarballs(t *testing.T, d *daemon, target string, tarballs [][]tarEntry, bound time.Duration) ([]string, map[string]model.RunRecord, map[string][]diskRun) {
	t.Helper()
	ids := make([]string, len(tarballs))
	for i, entries := range tarballs {
		ids[i] = uuid.NewString()
		src := o.uploadSource(t, makeTarball(t, entries...))
		o.publish(t, protocol.JobSubject(target), specWith(t, ids[i], target, src, nil), ids[i])
	}
	results := o.waitResults(t, ids, bound)
	o.streamEmpty(t)
	return ids, results, diskRuns(t, d)
}

func specWith(t *testing.T, id, target string, source any, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{"schema_version": 1, "job_id": id, "target": target, "source": source}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostPathSource is the spec's host_path source of dir.
func hostPathSource(dir string) map[string]string {
	return map[string]string{"kind": "host_path", "path": dir}
}

// kvHistory is the number of values the bucket keeps for key (0 when absent).
func kvHistory(t *testing.T, kv jetstream.KeyValue, key string) int {
	t.Helper()
	h, err := kv.History(t.Context(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(h)
}

// waitKeyGone polls until key is absent from kv (deleted, purged or aged out).
func waitKeyGone(t *testing.T, kv jetstream.KeyValue, key string, bound time.Duration) {
	t.Helper()
	itest.WaitFor(t, kv.Bucket()+" "+key+" to be gone", bound, func() bool {
		_, err := kv.Get(t.Context(), key)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
			t.Fatal(err)
		}
		return err != nil
	})
}

// checkRefused asserts a failed final record whose message starts with
// prefix, contains every want, and names one of the entries in double
// quotes (none given: no entry check).
func checkRefused(t *testing.T, key string, res model.RunRecord, prefix string, entries []string, want ...string) {
	t.Helper()
	msg := model.Value(res.Message)
	if res.Status != model.StatusFailed || !strings.HasPrefix(msg, prefix) {
		t.Errorf("job %s: result %s %q, want failed starting with %q", key, res.Status, msg, prefix)
		return
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("job %s: message %q does not contain %q", key, msg, w)
		}
	}
	if len(entries) == 0 {
		return
	}
	for _, e := range entries {
		if strings.Contains(msg, strconv.Quote(e)) || strings.Contains(msg, `"`+e+`"`) {
			return
		}
	}
	t.Errorf("job %s: message %q names none of the offending entries %q in double quotes", key, msg, entries)
}

// checkOneDelivery asserts that the job ran exactly once: one run
// directory, of the first delivery (a terminated or acked message).
func checkOneDelivery(t *testing.T, key string, runs []diskRun) {
	t.Helper()
	if len(runs) != 1 {
		t.Errorf("job %s: %d run directories, want exactly 1", key, len(runs))
	}
	for _, r := range runs {
		if r.job.Delivery != 1 {
			t.Errorf("job %s: a run of delivery %d, want only the first", key, r.job.Delivery)
		}
	}
}

// checkNoInstances asserts that no instance of the jobs is left; the
// executor deletes it at once, the reaper (every 3 s here) at the latest.
func checkNoInstances(t *testing.T, cl *incus.Client, keys ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := instancesOf(t, cl, keys...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d instances left behind, e.g. %s", len(left), left[0].Name)
			return
		}
		time.Sleep(time.Second)
	}
}

// fileState is what a listing records of one path.
type fileState struct {
	Mode  fs.FileMode
	Size  int64
	Nlink uint64
	Hash  string // regular files: sha256 of the content; symlinks: the target
}

// listTree records every path under root (root included) with its mode,
// size, link count and content hash, to compare before and after.
func listTree(t *testing.T, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fsn := fileState{Mode: st.Mode(), Size: st.Size()}
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			fsn.Nlink = uint64(s.Nlink)
		}
		switch {
		case st.Mode().IsRegular():
			fsn.Hash = fileHash(t, p)
		case st.Mode()&fs.ModeSymlink != 0:
			fsn.Hash, _ = os.Readlink(p)
		}
		out[p] = fsn
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// diffTrees reports every path created, removed or changed.
func diffTrees(before, after map[string]fileState) []string {
	var diffs []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			diffs = append(diffs, "removed "+p)
		case a != b:
			diffs = append(diffs, fmt.Sprintf("changed %s: %+v -> %+v", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "created "+p)
		}
	}
	return diffs
}

// rssSampler samples a process's VmRSS every 100 ms.
type rssSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	max     int64 // bytes
	samples int
	last    int64
	errs    int
}

func startRSSSampler(pid int) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	v, err := vmRSS(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		return
	}
	s.samples++
	s.last = v
	s.max = max(s.max, v)
}

// Stop ends the sampling and returns the maximum in bytes and the count.
func (s *rssSampler) Stop() (maxBytes int64, samples, errs int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.samples, s.errs
}

// vmRSS reads VmRSS (bytes) from /proc/<pid>/status.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		return kb << 10, err
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// mib formats bytes as MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// exitCode runs cmd and returns its exit code and combined output; an
// error that is not an exit status fails the test.
func exitCode(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	case err != nil:
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	return 0, string(out)
}

// jobDir is <state root>/runs/<run_id>/jobs/<job>.
func jobDir(stateRoot, runID, job string) string {
	return filepath.Join(stateRoot, "runs", runID, "jobs", job)
}

// checkGuestLog asserts that the guest log is the runner's boot line
// followed by exactly n bytes of pattern repeated, streaming the file.
func checkGuestLog(t *testing.T, path string, n int64, pattern string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("guest log: %v", err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	first, err := br.ReadString('\n')
	if err != nil || len(first) > 4096 {
		t.Errorf("guest log %s: no first line (%v, %d bytes read)", path, err, len(first))
		return
	}
	if !strings.HasPrefix(first, "[pikaci] incus guest booted at") {
		t.Errorf("guest log %s: first line %q, want the runner's boot line", path, first)
	}
	if got := st.Size() - int64(len(first)); got != n {
		t.Errorf("guest log %s: %d bytes after the boot line (%d in all), want exactly %d", path, got, st.Size(), n)
	}
	const chunk = 1 << 20
	p := int64(len(pattern))
	rep := []byte(strings.Repeat(pattern, chunk/len(pattern)+2))
	expect := func(off int64, m int) []byte { return rep[off%p : off%p+int64(m)] }
	// The whole content, chunk by chunk; report the first difference.
	got := make([]byte, chunk)
	var off int64
	for off < n {
		m, err := io.ReadFull(br, got[:min(chunk, n-off)])
		if want := expect(off, m); !bytes.Equal(got[:m], want) {
			i := 0
			for i < m && got[i] == want[i] {
				i++
			}
			t.Errorf("guest log %s: output byte %d is %q, want %q", path, off+int64(i),
				got[i:min(i+32, m)], want[i:min(i+32, m)])
			return
		}
		off += int64(m)
		if err != nil {
			t.Errorf("guest log %s: output ends after %d of %d bytes: %v", path, off, n, err)
			return
		}
	}
	// The last bytes once more, read at the end of the file.
	const tailN = 64
	if n >= tailN {
		last := make([]byte, tailN)
		if _, err := f.ReadAt(last, st.Size()-tailN); err != nil {
			t.Fatal(err)
		}
		if want := expect(n-tailN, tailN); !bytes.Equal(last, want) {
			t.Errorf("guest log %s: ends with %q, want %q", path, last, want)
		}
	}
}

// natsClientFile is <state root>/nats/client.json of an embedded server.
type natsClientFile struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// readNATSClientFile reads and checks client.json: mode 0600, every field.
func readNATSClientFile(t *testing.T, stateRoot string) natsClientFile {
	t.Helper()
	return readNATSUserFile(t, stateRoot, "client.json")
}

// readNATSUserFile reads one of the embedded server's user files
// (client.json, reader.json, worker.json: docs/PROTOCOL.md).
func readNATSUserFile(t *testing.T, stateRoot, name string) natsClientFile {
	t.Helper()
	p := filepath.Join(stateRoot, "nats", name)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("the embedded server's client file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var c natsClientFile
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if c.URL == "" || c.User == "" || c.Password == "" {
		t.Fatalf("%s lacks url, user or password (url %q, user %q, password of %d bytes)", p, c.URL, c.User, len(c.Password))
	}
	return c
}

// startEmbeddedDaemon runs a daemon on its own embedded nats-server at
// 127.0.0.1:port and returns it with the client file it wrote.
func startEmbeddedDaemon(t *testing.T, name, catalog, stateRoot string, port int) (*daemon, natsClientFile) {
	t.Helper()
	d := startDaemon(t, "", name, catalog, 1, "--state-root", stateRoot, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", port))
	c := readNATSClientFile(t, stateRoot)
	if want := fmt.Sprintf("nats://127.0.0.1:%d", port); c.URL != want {
		t.Errorf("client file url %q, want %q", c.URL, want)
	}
	return d, c
}

// checkOutputKeepsDaemonSmall runs one job printing n bytes (pattern
// repeated) and checks the daemon's memory, the guest log and the host log.
func checkOutputKeepsDaemonSmall(t *testing.T, command string, n int64, pattern string, bound time.Duration) {
	cl := require(t)
	url := startNATS(t)
	cat := writeCatalogWith(t, catalogJob{Target: "print", Command: command, Timeout: int(bound / time.Second)})
	// The daemon's default warm pool (one instance per worker), full before
	// the job comes: the output streams from a runner started ahead.
	// The job output limit (1GiB by default) set above n: this measures
	// the daemon's memory while all of the output streams; the limit has
	// its own test (executor/incus, TestIntegrationOutputLimitStopsTheJob).
	d := startDaemon(t, url, "daemon-a", cat, 1, "--warm", "-1", "--max-job-output", strconv.FormatInt(2*n, 10))
	waitPoolReady(t, d, 1)
	o := newOrchestrator(t, url)
	id := uuid.NewString()
	rss := startRSSSampler(d.cmd.Process.Pid)
	o.publish(t, protocol.JobSubject("print"), o.spec(id, "print"), id)
	res := o.waitResults(t, []string{id}, bound)[id]
	time.Sleep(2 * time.Second)
	peak, samples, errs := rss.Stop()
	t.Logf("daemon VmRSS: peak %s over %d samples (%d unreadable); job %s %q", mib(peak), samples, errs,
		res.Status, model.Value(res.Message))
	if samples == 0 {
		t.Fatalf("no VmRSS sample of the daemon (pid %d)", d.cmd.Process.Pid)
	}
	if peak >= 64<<20 {
		t.Errorf("the daemon's VmRSS reached %s, want below 64 MiB", mib(peak))
	}
	checkPassed(t, id, res)
	o.streamEmpty(t)
	dir := jobDir(d.stateRoot, res.RunID, "job")
	if fi, err := os.Stat(filepath.Join(dir, "host.log")); err != nil {
		t.Errorf("host.log: %v", err)
	} else {
		t.Logf("host.log: %d bytes", fi.Size())
		if fi.Size() >= 2<<20+64<<10 {
			t.Errorf("host.log is %s, want below 2 MiB + 64 KiB", mib(fi.Size()))
		}
		if head, _ := os.ReadFile(filepath.Join(dir, "host.log")); !bytes.Contains(head, []byte("taken from the warm pool")) {
			t.Errorf("the job did not run on a pool instance")
		}
	}
	checkGuestLog(t, filepath.Join(dir, "artifacts", "guest.log"), n, pattern)
	checkLogsStreamWithinCap(t, o, id, res.RunID)
	checkNoInstances(t, cl, id)
}

// checkLogsStreamWithinCap: the live-logs stream has its cap, holds far
// less than it (host.log's part of the output, not the output) and its
// last chunk of the job says where the rest is.
func checkLogsStreamWithinCap(t *testing.T, o *orchestrator, id, runID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := o.js.Stream(ctx, protocol.StreamLogs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stream %s: %d messages, %s (cap %s)", protocol.StreamLogs, info.State.Msgs, mib(int64(info.State.Bytes)), mib(info.Config.MaxBytes))
	if info.Config.MaxBytes != 1<<30 {
		t.Errorf("stream %s cap = %d bytes, want 1 GiB", protocol.StreamLogs, info.Config.MaxBytes)
	}
	if info.State.Bytes > 4<<20 {
		t.Errorf("stream %s holds %s for one job, want about host.log's 1 MiB", protocol.StreamLogs, mib(int64(info.State.Bytes)))
	}
	cons, err := o.js.OrderedConsumer(ctx, protocol.StreamLogs, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{protocol.LogSubject(id, runID, "job")}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			all = append(all, m.Data()...)
			n++
		}
		if n == 0 {
			break
		}
	}
	if !bytes.Contains(all, []byte("not repeated in host.log")) {
		t.Errorf("the job's %s of logs on NATS do not say they were cut; they end %q", mib(int64(len(all))), itest.Tail(string(all), 3))
	}
}

// jerichociRecord is the KV value's pointer to a record stored whole.
type jerichociRecord struct {
	Trimmed bool   `json:"trimmed"`
	Bucket  string `json:"bucket"`
	Object  string `json:"object"`
	Bytes   int64  `json:"bytes"`
}

// oversizedChangedFiles returns changed_files that make spec(files)
// exactly size bytes.
func oversizedChangedFiles(t *testing.T, size int, spec func([]string) []byte) []string {
	t.Helper()
	files := []string{"src/file-000000.rs"}
	n := len(spec(files))
	for i := 1; ; i++ {
		f := fmt.Sprintf("src/module-%03d/file-%06d.rs", i/1000, i)
		if n+len(f)+3 > size-64 { // its quotes and comma
			break
		}
		files, n = append(files, f), n+len(f)+3
	}
	if got := len(spec(files)); got != n {
		t.Fatalf("spec is %d bytes, counted %d", got, n)
	}
	files = append(files, "pad/"+strings.Repeat("x", size-n-3-len("pad/")))
	if got := len(spec(files)); got != size {
		t.Fatalf("spec is %d bytes, want %d", got, size)
	}
	return files
}

// fillDisk writes file until its filesystem is full.
func fillDisk(t *testing.T, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", file, err)
			}
			return
		}
	}
}

// checkBucketTTL asserts the age limit of the results and claims buckets.
func checkBucketTTL(t *testing.T, o *orchestrator, want time.Duration) {
	t.Helper()
	for _, kv := range []jetstream.KeyValue{o.results, o.jobs} {
		s, err := kv.Status(t.Context())
		if err != nil {
			t.Fatalf("%s status: %v", kv.Bucket(), err)
		}
		if s.TTL() != want {
			t.Errorf("%s keeps values %s, want %s (--keep-results)", kv.Bucket(), s.TTL(), want)
		}
	}
}
