package incusfault

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/executor"
	"jerichoci/internal/itest"
	"jerichoci/internal/testenv"
	"jerichoci/internal/testlock"
	"jerichoci/model"
	"jerichoci/run"
	rundaemon "jerichoci/run/daemon"
	"jerichoci/run/protocol"
)

const project = "pika-managed-agents"

var (
	root       string // the repository
	jciBin     string // freshly built jerichoci
	natsBin    string // bin/nats-server
	setupError error  // why the test cannot run
	lockWaited time.Duration
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// The fast run (-short) leaves the test out: no lock, no build.
	if testenv.Short() {
		return m.Run()
	}
	wd, _ := os.Getwd()
	root = filepath.Clean(filepath.Join(wd, "..", ".."))
	// Exclusive: no other package's tests talk to incusd while this one
	// kills it. They hold it shared for their whole run, so this waits for
	// them (under `go test ./...`, at most the longest of them), within
	// the binary's -test.timeout less room for the test itself.
	flag.Parse()
	lock, err := testlock.Acquire(testlock.Path(), testlock.Exclusive, lockWait())
	if err != nil {
		setupError = fmt.Errorf("the exclusive incusd test lock: %w", err)
		return m.Run()
	}
	defer lock.Release()
	lockWaited = lock.Waited
	if lock.Waited > time.Second {
		fmt.Fprintf(os.Stderr, "incusfault: waited %s for the exclusive incusd test lock\n", lock.Waited.Round(time.Second))
	}
	tmp, err := os.MkdirTemp("", "jerichoci-incusfault-")
	if err != nil {
		setupError = err
		return m.Run()
	}
	defer os.RemoveAll(tmp)
	jciBin = filepath.Join(tmp, "jerichoci")
	natsBin = filepath.Join(root, "bin", "nats-server")
	if out, err := itest.GoBuild(root, jciBin, "./cmd/jerichoci"); err != nil {
		setupError = fmt.Errorf("build jerichoci: %v\n%s", err, out)
	} else if _, err := os.Stat(natsBin); err != nil {
		if out, err := itest.GoBuild(root, natsBin, "github.com/nats-io/nats-server/v2"); err != nil {
			setupError = fmt.Errorf("build bin/nats-server: %v\n%s", err, out)
		}
	}
	return m.Run()
}

// lockWait is how long to wait for the exclusive lock: -test.timeout less
// 6 minutes for the test (at most 3 of them waiting for a quiet incusd),
// at least half the timeout; 25 minutes without a timeout.
func lockWait() time.Duration {
	timeout := 0 * time.Second
	if f := flag.Lookup("test.timeout"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			timeout, _ = g.Get().(time.Duration)
		}
	}
	switch {
	case timeout <= 0:
		return 25 * time.Minute
	case timeout > 12*time.Minute:
		return timeout - 6*time.Minute
	}
	return timeout / 2
}

// unavailable skips the test, or fails it in CI.
func unavailable(t *testing.T, msg string) {
	t.Helper()
	testenv.Missing(t, "%s", msg)
}

// incusSocket is the socket of the local incusd.
func incusSocket() (string, error) {
	if s := os.Getenv("INCUS_SOCKET"); strings.TrimSpace(s) != "" {
		return s, nil
	}
	for _, p := range []string{"/var/lib/incus/unix.socket", "/run/incus/unix.socket"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p, nil
		}
	}
	return "", errors.New("no incusd socket (INCUS_SOCKET unset, none of /var/lib/incus/unix.socket, /run/incus/unix.socket)")
}

// incusAPI is a bare REST client of incusd on its unix socket: new
// connections each time, so it works across an incusd restart.
type incusAPI struct {
	sock string
}

func (a incusAPI) get(ctx context.Context, path string, out any) error {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", a.sock)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://incus"+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Type     string          `json:"type"`
		Error    string          `json:"error"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("GET %s: HTTP %d: %w", path, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || env.Type == "error" {
		return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, env.Error)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(env.Metadata, out)
}

// up reports whether incusd answers GET /1.0 (as scripts/incus-up checks).
func (a incusAPI) up(ctx context.Context) bool {
	return a.get(ctx, "/1.0", nil) == nil
}

// instance is what the test reads of an instance.
type instance struct {
	Name      string            `json:"name"`
	Project   string            `json:"project"`
	Status    string            `json:"status"`
	Config    map[string]string `json:"config"`
	CreatedAt time.Time         `json:"created_at"`
}

// instances lists the instances of every project.
func (a incusAPI) instances(ctx context.Context) ([]instance, error) {
	var out []instance
	err := a.get(ctx, "/1.0/instances?recursion=1&all-projects=true", &out)
	return out, err
}

// ownedBy reports whether in is a daemon instance of one of the job keys.
func ownedBy(in instance, keys ...string) bool {
	for _, k := range keys {
		if strings.HasPrefix(in.Config[executor.ConfigOwner], rundaemon.OwnerPrefix+k+"/") {
			return true
		}
	}
	return false
}

// requireIncusd skips (fails in CI) unless the binaries are built, this
// runs as root and incusd answers with the runner image.
func requireIncusd(t *testing.T) incusAPI {
	t.Helper()
	testenv.Needs(t, "root, bin/nats-server, a jerichoci build and incusd with project "+project+" and image pikaci/dev (scripts/incus-up)")
	if setupError != nil {
		unavailable(t, "needs bin/nats-server, a jerichoci build and the incusd test lock: "+setupError.Error())
	}
	if os.Geteuid() != 0 {
		unavailable(t, "kills and starts incusd: needs root")
	}
	sock, err := incusSocket()
	if err != nil {
		unavailable(t, "needs incusd (scripts/incus-up): "+err.Error())
	}
	api := incusAPI{sock: sock}
	if err := api.get(t.Context(), "/1.0/images/aliases/pikaci%2Fdev?project="+project, nil); err != nil {
		unavailable(t, "needs incusd with project "+project+" and image pikaci/dev (scripts/incus-up): "+err.Error())
	}
	return api
}

type daemon struct {
	name      string
	stateRoot string
	cmd       *exec.Cmd
	log       *itest.SyncBuffer
	done      chan struct{}
}

// writeCatalog writes a catalog with one single-job target per command.
func writeCatalog(t *testing.T, commands map[string]string) string {
	t.Helper()
	var targets []any
	for id, command := range commands {
		targets = append(targets, map[string]any{
			"id": id, "description": "test target " + id,
			"jobs": []any{map[string]any{
				"id": "job", "description": "test job", "timeout_secs": 120,
				"command": map[string]any{"kind": "shell", "command": command},
				"runtime": map[string]any{"kind": "incus", "incus": map[string]any{"guest_role": "pikaci-runner"}},
			}},
		})
	}
	b, err := json.MarshalIndent(map[string]any{"schema_version": 1, "targets": targets}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startDaemon runs `jerichoci serve` with test/daemon's harness settings
// (extra flags win) and waits until it pulls.
func startDaemon(t *testing.T, url, name, catalog string, concurrency int, extra ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, stateRoot: t.TempDir(), log: &itest.SyncBuffer{}}
	args := []string{"serve", "--catalog", catalog, "--state-root", d.stateRoot,
		"--concurrency", fmt.Sprint(concurrency), "--ack-wait", "6s", "--max-deliver", "3",
		"--retry-delay", "500ms", "--reap-interval", "3s", "--drain-timeout", "30s", "--log-level", "info",
		"--host-path-root", os.TempDir(), "--warm", "0", "--http-listen", ""}
	d.cmd = exec.Command(jciBin, append(args, extra...)...)
	d.cmd.Env = append(itest.CleanEnv(), "JERICHOCI_OWNER="+name, "JERICHOCI_NATS_URL="+url)
	d.done = itest.StartServe(t, name, d.cmd, d.log)
	return d
}

// orchestrator publishes specs and reads results, as any NATS client does.
type orchestrator struct {
	js      jetstream.JetStream
	results jetstream.KeyValue
	src     string
}

func newOrchestrator(t *testing.T, url string) *orchestrator {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	o := &orchestrator{js: js, src: t.TempDir()}
	if err := os.WriteFile(filepath.Join(o.src, "README.md"), []byte("# incusd fault test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.results, err = js.KeyValue(t.Context(), protocol.BucketResults); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *orchestrator) publish(t *testing.T, id, target string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"schema_version": 1, "job_id": id, "target": target,
		"source": map[string]string{"kind": "host_path", "path": o.src}})
	m := &nats.Msg{Subject: protocol.JobSubject(target), Data: b, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := o.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// result is the job's final record; nil while there is none.
func (o *orchestrator) result(t *testing.T, key string) *model.RunRecord {
	t.Helper()
	e, err := o.results.Get(t.Context(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var r model.RunRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		t.Fatalf("result of %s: %v", key, err)
	}
	return &r
}

// resultValues is the number of values of key in the results bucket.
func (o *orchestrator) resultValues(t *testing.T, key string) int {
	t.Helper()
	h, err := o.results.History(t.Context(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(h)
}

// streamEmpty waits until the work stream holds no message.
func (o *orchestrator) streamEmpty(t *testing.T) {
	t.Helper()
	itest.WaitFor(t, "the work stream to empty", 60*time.Second, func() bool {
		s, err := o.js.Stream(t.Context(), protocol.StreamJobs)
		if err != nil {
			return false
		}
		info, err := s.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
}

// diskRun is one run directory of a daemon.
type diskRun struct {
	job protocol.JobFile
	rec model.RunRecord
}

// diskRuns reads every run of the daemon, by job key.
func diskRuns(t *testing.T, d *daemon) map[string][]diskRun {
	t.Helper()
	out := map[string][]diskRun{}
	dirs, _ := filepath.Glob(filepath.Join(d.stateRoot, "runs", "*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, protocol.JobFileName))
		if err != nil {
			continue
		}
		var jf protocol.JobFile
		if err := json.Unmarshal(b, &jf); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		rec, err := run.LoadRun(d.stateRoot, filepath.Base(dir))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		out[jf.JobID] = append(out[jf.JobID], diskRun{job: jf, rec: rec})
	}
	return out
}

// startNATS runs the test binary nats-server (itest.StartNATS).
func startNATS(t *testing.T) string { return itest.StartNATS(t, natsBin) }
