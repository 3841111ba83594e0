package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/internal/itest"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// TestSecretEnvMaskedEverywhere runs a job that prints its secret, once
// split across two writes half a second apart and once on stderr, on a
// fresh instance and on a warm pool's. The job sees the value (it checks
// its length, and the masked lines show it was printed whole); the value
// is in no log line on NATS, no file under the daemon's state root, no
// message of any stream (logs, events, specs, records) and not in the
// daemon's own log.
func TestSecretEnvMaskedEverywhere(t *testing.T) {
	require(t)
	secret := "tok-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	t.Setenv("JCI_TEST_SECRET", secret) // the daemons' environment (cleanEnv)
	command := `printf 'tok=%s' "${JCI_TEST_SECRET:0:6}"; sleep 0.5; printf '%s\n' "${JCI_TEST_SECRET:6}"; ` +
		`echo "err=$JCI_TEST_SECRET" >&2; test "${#JCI_TEST_SECRET}" -eq ` + strconv.Itoa(len(secret))
	cat := writeCatalogWith(t,
		catalogJob{Target: "secretive", Command: command, SecretEnv: []string{"JCI_TEST_SECRET"}},
		catalogJob{Target: "greedy", Command: "true", SecretEnv: []string{"HOME_TOKEN"}})
	for _, warm := range []string{"0", "1"} {
		t.Run("warm "+warm, func(t *testing.T) {
			url := startNATS(t)
			d := startDaemon(t, url, "daemon-secret-"+warm, cat, 1, "--secret-env", "JCI_TEST_SECRET", "--warm", warm)
			o := newOrchestrator(t, url)
			live := liveLogs(t, o.nc)
			id, refused := uuid.NewString(), uuid.NewString()
			o.publish(t, protocol.JobSubject("secretive"), o.spec(id, "secretive"), id)
			o.publish(t, protocol.JobSubject("greedy"), o.spec(refused, "greedy"), refused)
			res := o.waitResults(t, []string{id, refused}, 3*time.Minute)
			if r := res[id]; r.Status != model.StatusPassed {
				t.Errorf("job %s: %s %q; want passed (it checks it got the secret)", id, r.Status, model.Value(r.Message))
			}
			wantRefused := "secret_env `HOME_TOKEN` is not one this worker passes to jobs (serve --secret-env lists those)"
			if r := res[refused]; r.Status != model.StatusFailed || len(r.Jobs) != 1 || model.Value(r.Jobs[0].Message) != wantRefused {
				t.Errorf("job %s naming a variable the worker does not pass: %s %+v", refused, r.Status, r.Jobs)
			}
			itest.WaitFor(t, "the masked lines on NATS", 30*time.Second, func() bool {
				return strings.Contains(live.String(), "[runner:stdout] tok=[MASKED]\n") &&
					strings.Contains(live.String(), "[runner:stdout] err=[MASKED]\n") // the runner merges the command's stderr, as the original
			})
			if strings.Contains(live.String(), secret) {
				t.Errorf("the live logs hold the secret")
			}
			host, _ := os.ReadFile(filepath.Join(jobDir(d.stateRoot, res[id].RunID, "job"), "host.log"))
			if !bytes.Contains(host, []byte("[runner:stdout] tok=[MASKED]\n")) {
				t.Errorf("host.log lacks the masked line:\n%s", host)
			}
			checkNoSecretInFiles(t, d.stateRoot, secret)
			checkNoSecretOnNATS(t, o.js, secret)
			if strings.Contains(d.log.String(), secret) {
				t.Errorf("the daemon's log holds the secret")
			}
		})
	}
}

// checkNoSecretInFiles fails for every file under root holding secret.
func checkNoSecretInFiles(t *testing.T, root, secret string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (a source cache entry)
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		n++
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files under the state root, none with the secret", n)
}

// liveLogs collects every live log chunk on NATS (jerichoci.logs.>) from
// now until the test ends.
func liveLogs(t *testing.T, nc *nats.Conn) *itest.SyncBuffer {
	t.Helper()
	var live itest.SyncBuffer
	sub, err := nc.Subscribe(protocol.SubjectLogsPrefix+">", func(m *nats.Msg) { live.Write(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &live
}

// checkNoSecretOnNATS reads every message of every stream of the
// protocol (work, events, logs, dead letters, claims, results, fleet,
// sources, records), one by one by sequence, as the worker may
// (docs/PROTOCOL.md), and fails for one holding secret.
func checkNoSecretOnNATS(t *testing.T, js jetstream.JetStream, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	streams := []string{protocol.StreamJobs, protocol.StreamEvents, protocol.StreamLogs, protocol.StreamDead,
		"KV_" + protocol.BucketJobs, "KV_" + protocol.BucketResults, "KV_" + protocol.BucketFleet,
		"OBJ_" + protocol.BucketSources, "OBJ_" + protocol.BucketRecords}
	total := 0
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info := s.CachedInfo()
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // deleted, purged or expired
			}
			if err != nil {
				t.Fatalf("stream %s, message %d: %v", name, seq, err)
			}
			total++
			if bytes.Contains(m.Data, []byte(secret)) {
				t.Errorf("stream %s, subject %s holds the secret", name, m.Subject)
			}
			for k, vs := range m.Header {
				for _, v := range vs {
					if strings.Contains(v, secret) {
						t.Errorf("stream %s, header %s holds the secret", name, k)
					}
				}
			}
		}
	}
	if total == 0 {
		t.Errorf("no message in any of the streams %s: nothing was checked", strings.Join(streams, ", "))
	}
	t.Logf("%d messages in the streams %s, none with the secret", total, strings.Join(streams, ", "))
}
