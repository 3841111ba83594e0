// Command natsload measures what a fleet's NATS holds at 1×, 10× and 100×
// the seed's load (docs/SCALING.md): the seed is one push of the ten pika
// lanes. It reads a real push from a running daemon's NATS (every log
// chunk, event and final record of the push's jobs, as the daemon wrote
// them), then replays it 1, 10 and 100 times, each copy under new job ids,
// into a fresh nats-server process (bin/nats-server) whose streams,
// buckets and object stores the daemon's own code creates with its
// defaults. For each scale it prints what each stream and bucket holds,
// the server's store on disk and its resident memory, and how long the
// writes took.
//
//	go run ./test/bench/natsload -state .pikaci -push /tmp/push.out -source DIR
//
// -push is what `jerichoci enqueue LANE…` printed (the push line, then one
// "<job id> <lane>" per lane). -source is the push's source directory: one
// source tarball per push goes into the sources object store, as enqueue
// uploads it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	"jerichoci/run/daemon"
	"jerichoci/run/protocol"
	"jerichoci/sourcetar"
)

func main() {
	state := flag.String("state", ".pikaci", "the state root of the daemon whose NATS holds the push (its nats/worker.json)")
	pushFile := flag.String("push", "", "what `jerichoci enqueue LANE…` printed for the push")
	source := flag.String("source", "", "the push's source directory")
	server := flag.String("nats-server", "bin/nats-server", "the nats-server program to replay into")
	scales := flag.String("scales", "1,10,100", "how many copies of the push to replay, each a fresh server")
	flag.Parse()
	ctx := context.Background()
	if err := run(ctx, *state, *pushFile, *source, *server, *scales); err != nil {
		fmt.Fprintln(os.Stderr, "natsload:", err)
		os.Exit(1)
	}
}

// job is one lane of the captured push: what the daemon wrote for it.
type job struct {
	id, lane string
	logs     []*nats.Msg // JERICHOCI_LOGS, in order
	events   []*nats.Msg // JERICHOCI_EVENTS, in order
	result   []byte      // the jerichoci-results value
	record   []byte      // the jerichoci-records object, when the record was too large
}

func run(ctx context.Context, state, pushFile, source, server, scales string) error {
	jobs, err := readPush(pushFile)
	if err != nil {
		return err
	}
	creds, err := readCreds(filepath.Join(state, "nats", "worker.json"))
	if err != nil {
		return err
	}
	nc, err := nats.Connect(creds.URL, nats.UserInfo(creds.User, creds.Password), nats.CustomInboxPrefix(protocol.WorkerInboxPrefix))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", creds.URL, err)
	}
	if err := capture(ctx, nc, jobs); err != nil {
		nc.Close()
		return err
	}
	nc.Close()
	var tarball bytes.Buffer
	if err := sourcetar.Pack(ctx, source, &tarball, nil); err != nil {
		return fmt.Errorf("pack %s: %w", source, err)
	}
	var logs, events, results int
	for _, j := range jobs {
		for _, m := range j.logs {
			logs += len(m.Data)
		}
		for _, m := range j.events {
			events += len(m.Data)
		}
		results += len(j.result) + len(j.record)
	}
	fmt.Printf("the captured push: %d lanes; %d log chunks (%d bytes), %d events (%d bytes), results %d bytes, source tarball %d bytes\n",
		len(jobs), count(jobs, func(j job) int { return len(j.logs) }), logs, count(jobs, func(j job) int { return len(j.events) }), events, results, tarball.Len())
	fmt.Printf("%-6s %-6s %-22s %-22s %-22s %-22s %-22s %-12s %-10s %-8s\n", "scale", "jobs", "jobs stream peak", "events", "logs", "results", "sources", "store disk", "server rss", "writes")
	for _, f := range strings.Split(scales, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-scales %q: expected positive counts separated by commas", scales)
		}
		if err := replay(ctx, server, jobs, tarball.Bytes(), n); err != nil {
			return fmt.Errorf("scale %d: %w", n, err)
		}
	}
	return nil
}

func count(jobs []job, f func(job) int) int {
	n := 0
	for _, j := range jobs {
		n += f(j)
	}
	return n
}

// readPush reads the job ids and lanes enqueue printed.
func readPush(path string) ([]job, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var jobs []job
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 {
			if _, err := uuid.Parse(fields[0]); err == nil {
				jobs = append(jobs, job{id: fields[0], lane: fields[1]})
			}
		}
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("-push %s: no \"<job id> <lane>\" lines", path)
	}
	return jobs, sc.Err()
}

type credsFile struct{ URL, User, Password string }

func readCreds(path string) (credsFile, error) {
	var c credsFile
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

// capture reads every job's logs, events, result and record.
func capture(ctx context.Context, nc *nats.Conn, jobs []job) error {
	js, results, records, err := stores(ctx, nc)
	if err != nil {
		return err
	}
	for i := range jobs {
		j := &jobs[i]
		if j.logs, err = readAll(ctx, js, protocol.StreamLogs, protocol.SubjectLogsPrefix+j.id+".>"); err != nil {
			return err
		}
		if j.events, err = readAll(ctx, js, protocol.StreamEvents, protocol.SubjectRunsPrefix+j.id+".>"); err != nil {
			return err
		}
		e, err := results.Get(ctx, j.id)
		if err != nil {
			return fmt.Errorf("result of job %s (%s): %w", j.id, j.lane, err)
		}
		j.result = e.Value()
		if b, err := records.GetBytes(ctx, protocol.RecordObjectName(j.id)); err == nil {
			j.record = b
		} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
			return err
		}
	}
	return nil
}

// stores opens the results bucket and the records store the daemon made.
func stores(ctx context.Context, nc *nats.Conn) (jetstream.JetStream, jetstream.KeyValue, jetstream.ObjectStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, nil, err
	}
	results, err := js.KeyValue(ctx, protocol.BucketResults)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bucket %s: %w", protocol.BucketResults, err)
	}
	records, err := js.ObjectStore(ctx, protocol.BucketRecords)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("object store %s: %w", protocol.BucketRecords, err)
	}
	return js, results, records, nil
}

// readAll reads the messages of stream on subject, oldest first.
func readAll(ctx context.Context, js jetstream.JetStream, stream, subject string) ([]*nats.Msg, error) {
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", subject, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*nats.Msg
	for left := info.NumPending; left > 0; left-- {
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", subject, stream, err)
		}
		out = append(out, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	}
	return out, nil
}

// replay writes n copies of the push into a fresh server and reports.
func replay(ctx context.Context, server string, jobs []job, tarball []byte, n int) error {
	dir, err := os.MkdirTemp("", "natsload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(server, "-js", "-sd", dir, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", server, err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var nc *nats.Conn
	for i := 0; i < 100; i++ {
		if nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer nc.Close()
	cfg := daemon.DefaultQueueConfig()
	if _, err := daemon.OpenQueue(ctx, nc, cfg); err != nil {
		return err
	}
	js, results, records, err := stores(ctx, nc)
	if err != nil {
		return err
	}
	sources, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: protocol.BucketSources, TTL: cfg.SourcesTTL, Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	start := time.Now()
	// Every push is enqueued first (the jobs stream's peak), as a burst.
	var lanes []string
	for _, j := range jobs {
		lanes = append(lanes, j.lane)
	}
	newIDs := make([][]string, n)
	for p := 0; p < n; p++ {
		src := fmt.Sprintf("push-%d.tar.gz", p)
		if _, err := sources.PutBytes(ctx, src, tarball); err != nil {
			return err
		}
		group := &model.JobGroup{ID: fmt.Sprintf("push-%d", p), Lanes: lanes}
		for _, j := range jobs {
			id := uuid.New()
			newIDs[p] = append(newIDs[p], id.String())
			spec := model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: id, Lane: j.lane, Group: group, Requester: "natsload",
				GitHead: strings.Repeat("a", 40), Source: model.SourceRef{Kind: model.SourceObjectStore, Bucket: protocol.BucketSources, Object: src}}
			b, err := json.Marshal(spec)
			if err != nil {
				return err
			}
			if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: protocol.JobSubject(j.lane), Data: b, Header: nats.Header{nats.MsgIdHdr: []string{id.String()}}}); err != nil {
				return err
			}
		}
	}
	peak, err := js.Stream(ctx, protocol.StreamJobs)
	if err != nil {
		return err
	}
	jobsInfo := peak.CachedInfo().State
	if info, err := peak.Info(ctx); err == nil {
		jobsInfo = info.State
	}
	// Then each job's run: its logs and events, its result, its record.
	for p := 0; p < n; p++ {
		for i, j := range jobs {
			id := newIDs[p][i]
			for _, set := range [][]*nats.Msg{j.logs, j.events} {
				for _, m := range set {
					c := &nats.Msg{Subject: strings.Replace(m.Subject, j.id, id, 1), Header: m.Header, Data: m.Data}
					if _, err := js.PublishMsg(ctx, c); err != nil {
						return err
					}
				}
			}
			if _, err := results.Create(ctx, id, j.result); err != nil {
				return err
			}
			if j.record != nil {
				if _, err := records.PutBytes(ctx, protocol.RecordObjectName(id), j.record); err != nil {
					return err
				}
			}
		}
	}
	took := time.Since(start)
	row := []string{strconv.Itoa(n), strconv.Itoa(n * len(jobs)), state(jobsInfo)}
	for _, s := range []string{protocol.StreamEvents, protocol.StreamLogs, "KV_" + protocol.BucketResults, "OBJ_" + protocol.BucketSources} {
		st, err := js.Stream(ctx, s)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		row = append(row, state(info.State))
	}
	row = append(row, mib(du(dir)), rss(cmd.Process.Pid), took.Round(time.Millisecond).String())
	fmt.Printf("%-6s %-6s %-22s %-22s %-22s %-22s %-22s %-12s %-10s %-8s\n", toAny(row)...)
	return nil
}

func state(s jetstream.StreamState) string {
	return fmt.Sprintf("%d msgs %s", s.Msgs, mib(int64(s.Bytes)))
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func du(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// rss is the process's resident memory, from /proc.
func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return mib(kb << 10)
		}
	}
	return "?"
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
