package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"jerichoci/internal/itest"
	"jerichoci/run/protocol"
)

// protocolNATSConfig is the ```conf block of docs/PROTOCOL.md, exactly.
func protocolNATSConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n```conf\n")
	conf, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/PROTOCOL.md has no ```conf block")
	}
	return conf
}

// natsUser is a user's name and password on a server.
type natsUser struct{ name, password string }

// startConfiguredNATS runs a separate nats-server from conf (the passwords
// in its environment, as the document says) on a free port, and returns its
// URL and users.
func startConfiguredNATS(t *testing.T, conf string) (string, map[string]natsUser) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "jerichoci-nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	users := map[string]natsUser{}
	env := itest.CleanEnv()
	for _, role := range []string{"worker", "client", "reader"} {
		users[role] = natsUser{role, role + "-" + uuid.NewString()}
		env = append(env, "JERICHOCI_NATS_"+strings.ToUpper(role)+"_PASSWORD="+users[role].password)
	}
	port := itest.FreePort(t)
	cmd := exec.Command(natsBin, "-c", file, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", filepath.Join(dir, "store"))
	cmd.Env = env
	var logb itest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	u := fmt.Sprintf("nats://127.0.0.1:%d", port)
	itest.WaitFor(t, "nats-server from docs/PROTOCOL.md to take the reader", 30*time.Second, func() bool {
		nc, err := nats.Connect(u, nats.UserInfo("reader", users["reader"].password))
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
	if nc, err := nats.Connect(u, nats.Timeout(5*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Errorf("an anonymous client connected to the server of docs/PROTOCOL.md")
	}
	return u, users
}

// violationConn connects as user and collects the permission violations
// the server reports to it.
func violationConn(t *testing.T, u string, user natsUser) (*nats.Conn, <-chan error) {
	t.Helper()
	violations := make(chan error, 64)
	nc, err := nats.Connect(u, nats.UserInfo(user.name, user.password), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case violations <- err:
			default:
			}
		}
	}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user.name, err)
	}
	t.Cleanup(nc.Close)
	return nc, violations
}

// checkRefusedRequest sends a request on subject and expects the server's
// permissions violation for it (the request itself gets no answer).
func checkRefusedRequest(t *testing.T, nc *nats.Conn, violations <-chan error, what, subject string, data []byte) {
	t.Helper()
	want := `Permissions Violation for Publish to "` + subject + `"`
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := nc.RequestWithContext(ctx, subject, data)
		done <- err
	}()
	bound := time.After(30 * time.Second)
	for {
		select {
		case err := <-violations:
			if strings.Contains(err.Error(), want) {
				t.Logf("%s: refused: %v", what, err)
				return
			}
		case err := <-done:
			if err == nil {
				t.Errorf("%s (%s): the server answered; want a permissions violation", what, subject)
				return
			}
			done <- err
			select {
			case v := <-violations:
				if !strings.Contains(v.Error(), want) {
					t.Errorf("%s: %v, want %q", what, v, want)
				}
			case <-bound:
				t.Errorf("%s: %v, and no permissions violation", what, err)
			}
			return
		case <-bound:
			t.Errorf("%s (%s): no permissions violation within 30s", what, subject)
			return
		}
	}
}

// checkClientRefusals: with the client's credentials, a KV put on the
// results, a pull from the workers' consumer, a stream delete and a stream
// purge are each refused by the server as a permissions violation, and
// nothing changed.
func checkClientRefusals(t *testing.T, u string, client natsUser, forgedID string) {
	t.Helper()
	nc, violations := violationConn(t, u, client)
	forged, _ := json.Marshal(map[string]any{"schema_version": 1, "run_id": "forged", "status": "passed", "message": "forged by a client"})
	pull, _ := json.Marshal(map[string]any{"batch": 1, "expires": int64(time.Second)})
	checkRefusedRequest(t, nc, violations, "KV put on jerichoci-results", "$KV.jerichoci-results."+forgedID, forged)
	checkRefusedRequest(t, nc, violations, "pull from the workers' consumer", "$JS.API.CONSUMER.MSG.NEXT.JERICHOCI_JOBS.jerichoci-workers", pull)
	checkRefusedRequest(t, nc, violations, "stream delete", "$JS.API.STREAM.DELETE.JERICHOCI_JOBS", nil)
	checkRefusedRequest(t, nc, violations, "stream delete of the results", "$JS.API.STREAM.DELETE.KV_jerichoci-results", nil)
	checkRefusedRequest(t, nc, violations, "stream purge", "$JS.API.STREAM.PURGE.JERICHOCI_JOBS", nil)
	checkRefusedRequest(t, nc, violations, "stream purge of the results", "$JS.API.STREAM.PURGE.KV_jerichoci-results", nil)
	// The client's own view: no record.
	checkVictimHasNoResult(t, u, client, forgedID)
}

// checkRealVerdict runs `enqueue TARGET --job-id ID --wait` (an uploaded
// source) and `logs --follow ID` with env: both print the real failure,
// never the forged pass.
func checkRealVerdict(t *testing.T, env []string, dir, catalog, target, id string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# nats users\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(jciBin, "enqueue", target, "--job-id", id, "--wait", "--timeout", "4m", "--source", src, "--catalog", catalog)
	cmd.Dir, cmd.Env = dir, env
	code, out := exitCode(t, cmd)
	t.Logf("enqueue --wait:\n%s", out)
	if code != 1 {
		t.Errorf("enqueue --wait of the failing job exited %d, want 1 (failed)", code)
	}
	if strings.Contains(out, "forged") || strings.Contains(strings.ToLower(out), "passed") {
		t.Errorf("enqueue --wait printed the forged verdict:\n%s", out)
	}
	if !strings.Contains(out, "failed") {
		t.Errorf("enqueue --wait does not print the real failure:\n%s", out)
	}
	cmd = exec.Command(jciBin, "logs", "--follow", id)
	cmd.Dir, cmd.Env = dir, env
	code, out = exitCode(t, cmd)
	t.Logf("logs --follow:\n%s", out)
	if code != 1 || !strings.Contains(out, "the job failed here") {
		t.Errorf("logs --follow exited %d, want 1 with the job's output:\n%s", code, out)
	}
}

const failingCommand = "echo the job failed here; exit 3"

// TestNATSUsersExternalServerFromProtocolDoc: a separate nats-server runs
// from exactly docs/PROTOCOL.md's configuration; a daemon as the worker
// and the client commands as the client and reader work against it, and
// the client is refused the forged result, the pull, the delete and the
// purge; the real job's verdict is printed.
func TestNATSUsersExternalServerFromProtocolDoc(t *testing.T) {
	cl := require(t)
	u, users := startConfiguredNATS(t, protocolNATSConfig(t))
	cat := writeCatalogWith(t, catalogJob{Target: "fails", Command: failingCommand})
	worker := users["worker"]
	wu, _ := url.Parse(u)
	wu.User = url.UserPassword(worker.name, worker.password)
	startDaemon(t, wu.String(), "daemon-users", cat, 1)
	id := uuid.NewString()
	checkClientRefusals(t, u, users["client"], id)
	for _, role := range []string{"client", "reader"} {
		checkNoConsumers(t, u, users[role], id)
	}
	checkVictimHasNoResult(t, u, users["client"], id)
	// The reader may not queue.
	rnc, rviol := violationConn(t, u, users["reader"])
	checkRefusedRequest(t, rnc, rviol, "reader queues a job", protocol.JobSubject("fails"), []byte(`{}`))
	client := users["client"]
	env := append(itest.CleanEnv(), "JERICHOCI_NATS_URL="+u, "JERICHOCI_NATS_USER="+client.name, "JERICHOCI_NATS_PASSWORD="+client.password)
	checkRealVerdict(t, env, t.TempDir(), cat, "fails", id)
	checkNoInstances(t, cl, id)
}

// TestNATSUsersEmbeddedServer: the same against serve's embedded server
// with the credentials it wrote (client.json, reader.json: 0600 in a 0700
// directory), the client commands finding them under the state root.
func TestNATSUsersEmbeddedServer(t *testing.T) {
	cl := require(t)
	parent := t.TempDir()
	stateRoot := filepath.Join(parent, ".pikaci")
	cat := writeCatalogWith(t, catalogJob{Target: "fails", Command: failingCommand})
	_, c := startEmbeddedDaemon(t, "daemon-embedded-users", cat, stateRoot, itest.FreePort(t))
	if c.User != "client" {
		t.Errorf("client.json names the user %q, want client", c.User)
	}
	if fi, err := os.Stat(filepath.Join(stateRoot, "nats")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("STATE/nats: %v, %v; want a 0700 directory", fi, err)
	}
	var reader natsClientFile
	p := filepath.Join(stateRoot, "nats", "reader.json")
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want a 0600 file", p, fi, err)
	}
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &reader); err != nil || reader.User != "reader" || reader.Password == "" {
		t.Fatalf("%s: %s (%v); want the reader's credentials", p, b, err)
	}
	id := uuid.NewString()
	checkClientRefusals(t, c.URL, natsUser{c.User, c.Password}, id)
	for _, user := range []natsUser{{c.User, c.Password}, {reader.User, reader.Password}} {
		checkNoConsumers(t, c.URL, user, id)
	}
	checkVictimHasNoResult(t, c.URL, natsUser{c.User, c.Password}, id)
	rnc, rviol := violationConn(t, c.URL, natsUser{reader.User, reader.Password})
	checkRefusedRequest(t, rnc, rviol, "reader queues a job", protocol.JobSubject("fails"), []byte(`{}`))
	checkRefusedRequest(t, rnc, rviol, "reader puts a result", "$KV.jerichoci-results."+id, []byte(`{}`))
	// No NATS flags: the commands find the server and their user through
	// the default state root ./.pikaci.
	checkRealVerdict(t, itest.CleanEnv(), parent, cat, "fails", id)
	checkNoInstances(t, cl, id)
}
