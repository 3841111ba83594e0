// Command firstbyte measures publish → first byte of a job's output
// through the daemon (`make bench`, scripts/bench-firstbyte): FB_JOBS (50)
// jobs, one after another, each a command that prints one line, first on a
// daemon with its default warm pool, then with --warm 0 (cold: every job
// creates its instance), against the raw REST floor measured in the same
// run: create+start an instance of the same image over the same socket and
// exec the same command, to its first byte. It prints p50 and p99 of each
// and the ratios. The first byte is the line's arrival in the job's
// host.log, which the daemon writes as the runner's output comes.
//
// It needs incusd with the runner image (scripts/incus-up) and bin/jerichoci
// (FB_BIN, default ./bin). Everything it makes is deleted when it ends.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"jerichoci/executor/incus"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

const (
	marker  = "first-byte-marker"
	project = "pika-managed-agents"
	alias   = "pikaci/dev"
	catalog = `{"schema_version": 1, "include_builtin": false, "targets": [{"id": "first-byte", "description": "prints one line",
 "jobs": [{"id": "fb", "description": "echo", "timeout_secs": 60, "command": {"kind": "shell", "command": "echo ` + marker + `"},
  "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}}}]}]}`
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "firstbyte:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	jobs := envInt("FB_JOBS", 50)
	bin := os.Getenv("FB_BIN")
	if bin == "" {
		bin = "bin"
	}
	tmp, err := os.MkdirTemp("", "jci-firstbyte-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "README.md"), []byte("# first byte\n"), 0o644); err != nil {
		return err
	}
	cat := filepath.Join(tmp, "catalog.json")
	if err := os.WriteFile(cat, []byte(catalog), 0o644); err != nil {
		return err
	}

	floor, err := restFloor(ctx, jobs)
	if err != nil {
		return fmt.Errorf("rest floor: %w", err)
	}
	warm, err := throughDaemon(ctx, bin, tmp, "warm", cat, src, jobs, nil)
	if err != nil {
		return fmt.Errorf("warm pool: %w", err)
	}
	burst, err := throughDaemon(ctx, bin, tmp, "burst", cat, src, jobs, nil)
	if err != nil {
		return fmt.Errorf("warm pool, back to back: %w", err)
	}
	cold, err := throughDaemon(ctx, bin, tmp, "cold", cat, src, jobs, []string{"--warm", "0"})
	if err != nil {
		return fmt.Errorf("cold: %w", err)
	}
	fmt.Printf("jobs: %d each, one after another\n", jobs)
	report := func(name string, d []time.Duration) {
		fmt.Printf("%-58s p50 %7.1f ms  p99 %7.1f ms\n", name, ms(pct(d, 50)), ms(pct(d, 99)))
	}
	report("raw REST floor (create+start+exec, first byte)", floor)
	report("daemon, warm pool (publish → first byte)", warm)
	report("daemon, default pool, jobs back to back", burst)
	report("daemon, --warm 0 (publish → first byte)", cold)
	fmt.Printf("ratio warm/floor: p50 %.2f  p99 %.2f\n", ratio(warm, floor, 50), ratio(warm, floor, 99))
	fmt.Printf("ratio cold/floor: p50 %.2f  p99 %.2f\n", ratio(cold, floor, 50), ratio(cold, floor, 99))
	return nil
}

// restFloor creates, starts and execs into an instance over the socket,
// timing the first byte of the command's output, n times.
func restFloor(ctx context.Context, n int) ([]time.Duration, error) {
	sock, err := incus.SocketPath(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	cl, err := incus.NewUnix(sock, incus.WithProject(project))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []time.Duration
	for i := 0; i < n && ctx.Err() == nil; i++ {
		name := fmt.Sprintf("jci-fb-%d-%d", os.Getpid(), i)
		t0 := time.Now()
		err := cl.CreateInstance(ctx, incus.InstancesPost{Name: name, Type: "container",
			Source:   incus.InstanceSource{Type: "image", Alias: alias},
			Profiles: []string{"default", "pika-agent-dev"}, Start: true,
			Config: map[string]string{"limits.cpu": "2", "limits.memory": "4096MiB", "security.guestapi": "false"}})
		var first time.Time
		if err == nil {
			w := &firstWrite{}
			_, err = cl.Exec(ctx, name, incus.ExecRequest{Command: []string{"echo", marker}}, w, nil)
			first = w.at()
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		_ = cl.DeleteInstance(dctx, name)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, first.Sub(t0))
	}
	return out, ctx.Err()
}

type firstWrite struct {
	mu sync.Mutex
	t  time.Time
}

func (f *firstWrite) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.t.IsZero() && len(p) > 0 {
		f.t = time.Now()
	}
	f.mu.Unlock()
	return len(p), nil
}

func (f *firstWrite) at() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }

// throughDaemon starts `jerichoci serve` on embedded NATS and times n jobs
// from publish to the marker line in their host.log.
func throughDaemon(ctx context.Context, bin, tmp, name, cat, src string, n int, extra []string) ([]time.Duration, error) {
	state := filepath.Join(tmp, "state-"+name)
	port := map[string]int{"warm": 15222, "cold": 15223, "burst": 15224}[name]
	args := append([]string{"serve", "--state-root", state, "--catalog", cat, "--host-path-root", tmp,
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "debug", "--http-listen", "", "--fleet", fmt.Sprintf("jci-fb-%d-%s", os.Getpid(), name)}, extra...)
	var log bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "jerichoci"), args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		if f := os.Getenv("FB_LOG"); f != "" { // the daemon's log, for a closer look
			_ = os.WriteFile(f+"."+name, log.Bytes(), 0o644)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	var creds struct{ URL, User, Password string }
	for deadline := time.Now().Add(time.Minute); ; {
		b, err := os.ReadFile(filepath.Join(state, "nats", "client.json"))
		if err == nil && json.Unmarshal(b, &creds) == nil && bytes.Contains(log.Bytes(), []byte("workers on")) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("serve did not start:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc, err := nats.Connect(creds.URL, nats.UserInfo(creds.User, creds.Password))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	c, err := protocol.NewClient(nc)
	if err != nil {
		return nil, err
	}
	fleet := fmt.Sprintf("jci-fb-%d-%s", os.Getpid(), name)
	var out []time.Duration
	seen := map[string]bool{}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		switch name {
		case "warm": // the warm path: the pool (2 per image) is full when the job comes
			if err := waitPoolFull(ctx, fleet, 2); err != nil {
				return nil, err
			}
		case "burst":
			if i == 0 {
				if err := waitPoolFull(ctx, fleet, 2); err != nil {
					return nil, err
				}
			}
		}
		d, err := oneJob(ctx, c, state, src, seen)
		if err != nil {
			return nil, fmt.Errorf("job %d: %w\n%s", i, err, tail(log.String(), 4000))
		}
		out = append(out, d)
	}
	return out, ctx.Err()
}

func oneJob(ctx context.Context, c *protocol.Client, state, src string, seen map[string]bool) (time.Duration, error) {
	id := uuid.NewString()
	w, err := c.Watch(ctx, id)
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	spec := model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: uuid.MustParse(id), Target: "first-byte",
		Source: model.SourceRef{Kind: model.SourceHostPath, Path: src}}
	t0 := time.Now()
	if _, err := c.Enqueue(ctx, spec); err != nil {
		return 0, err
	}
	// The new run directory is found by listing runs/ (events may come
	// later than the output); its host.log is polled every millisecond.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	final := make(chan *model.RunRecord, 1)
	go func() {
		for {
			u, err := w.Next(wctx)
			if err != nil {
				final <- nil
				return
			}
			if u.Record != nil {
				final <- u.Record
				return
			}
		}
	}()
	want := []byte("[runner:stdout] " + marker)
	runs := filepath.Join(state, "runs")
	for {
		entries, _ := os.ReadDir(runs)
		found := false
		for _, e := range entries {
			if seen[e.Name()] {
				continue
			}
			b, err := os.ReadFile(filepath.Join(runs, e.Name(), "jobs", "fb", "host.log"))
			if err == nil && bytes.Contains(b, want) {
				seen[e.Name()] = true
				found = true
			}
		}
		if !found {
			select {
			case rec := <-final:
				if rec == nil {
					return 0, fmt.Errorf("watch ended without the job's output")
				}
				b, _ := model.EncodeCompact(rec)
				return 0, fmt.Errorf("the job ended without its output: %s", b)
			default:
			}
		}
		if found {
			d := time.Since(t0)
			if os.Getenv("FB_LOG") != "" {
				fmt.Fprintf(os.Stderr, "job %s published %s, first byte %s\n", id, t0.UTC().Format("15:04:05.000"), time.Now().UTC().Format("15:04:05.000"))
			}
			if rec := <-final; rec == nil { // jobs do not overlap
				return 0, fmt.Errorf("no final record")
			}
			return d, nil
		}
		if wctx.Err() != nil {
			return 0, fmt.Errorf("no output under %s", runs)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitPoolFull waits until the fleet has n idle pool instances running,
// and a moment more for their runners to start.
func waitPoolFull(ctx context.Context, fleet string, n int) error {
	sock, err := incus.SocketPath(os.LookupEnv)
	if err != nil {
		return err
	}
	cl, err := incus.NewUnix(sock, incus.WithProject(project))
	if err != nil {
		return err
	}
	defer cl.Close()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		all, err := cl.ListInstances(ctx)
		if err != nil {
			return err
		}
		ready := 0
		for _, in := range all {
			if in.Config["user.jerichoci.fleet"] == fleet && in.Config["user.jerichoci.pool"] != "" && in.Status == "Running" {
				ready++
			}
		}
		if ready >= n {
			time.Sleep(500 * time.Millisecond)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pool of fleet %s did not fill", fleet)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[min(i, len(s))-1]
}

func ratio(a, b []time.Duration, p int) float64 { return float64(pct(a, p)) / float64(pct(b, p)) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
