package incus

// Integration tests against the real incusd that scripts/incus-up installs
// and prepares (project pika-managed-agents, image alias pikaci/dev). They
// run in plain `go test`; without a reachable daemon they fail when CI is
// set and skip otherwise.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"jerichoci/executor"
	"jerichoci/internal/testenv"
	"jerichoci/model"
)

const (
	itProject = "pika-managed-agents"
	itProfile = "pika-agent-dev"
	itAlias   = "pikaci/dev"
)

// realClient returns a client for the local incusd, or skips (fails in CI).
func realClient(t *testing.T) *Client {
	t.Helper()
	testenv.Needs(t, "incusd with project pika-managed-agents and image pikaci/dev (scripts/incus-up)")
	unavailable := func(format string, a ...any) {
		t.Helper()
		testenv.Missing(t, "%s; run scripts/incus-up to install and start incusd", fmt.Sprintf(format, a...))
	}
	sock, err := SocketPath(os.LookupEnv)
	if err != nil {
		unavailable("no incusd: %v", err)
	}
	c, err := NewUnix(sock, WithProject(itProject))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Server(ctx); err != nil {
		unavailable("incusd at %s not reachable: %v", sock, err)
	}
	if _, err := c.GetImageAlias(ctx, itAlias); err != nil {
		unavailable("image alias %s missing in project %s: %v", itAlias, itProject, err)
	}
	return c
}

func uniqueName(prefix string) string {
	b := make([]byte, 5)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// deletedAtEnd returns a new instance name with prefix; whatever holds
// that name is deleted when the test ends, on a context detached from the
// test's.
func deletedAtEnd(t *testing.T, c *Client, prefix string) string {
	t.Helper()
	name := uniqueName(prefix)
	detached := context.WithoutCancel(t.Context())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(detached, 2*time.Minute)
		defer cancel()
		if err := c.DeleteInstance(ctx, name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// launch creates (and starts) a container from pikaci/dev; it is deleted
// when the test ends (deletedAtEnd).
func launch(t *testing.T, c *Client, start bool, config map[string]string) string {
	t.Helper()
	name := deletedAtEnd(t, c, "jci-test-")
	err := c.CreateInstance(t.Context(), InstancesPost{
		Name: name, Type: TypeContainer, Source: InstanceSource{Type: "image", Alias: itAlias},
		Profiles: []string{"default", itProfile}, Config: config, Start: start,
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func TestIntegrationLifecycle(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()
	name := launch(t, c, true, map[string]string{"user.pika.guest_role": "pikaci-runner", "limits.cpu": "2"})

	inst, err := c.GetInstance(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != "Running" || inst.Type != TypeContainer || inst.Config["user.pika.guest_role"] != "pikaci-runner" ||
		inst.ExpandedConfig["limits.cpu"] != "2" || strings.Join(inst.Profiles, ",") != "default,"+itProfile {
		t.Fatalf("GetInstance() = status %q type %q config %v profiles %v", inst.Status, inst.Type, inst.Config, inst.Profiles)
	}
	if code, err := c.Exec(ctx, name, ExecRequest{Command: []string{"true"}}, nil, nil); err != nil || code != 0 {
		t.Fatalf("Exec(true) = %d, %v", code, err)
	}
	if err := c.ForceStopInstance(ctx, name); err != nil {
		t.Fatal(err)
	}
	if inst, err = c.GetInstance(ctx, name); err != nil || inst.Status != "Stopped" {
		t.Fatalf("after force stop: %+v, %v", inst, err)
	}
	if err := c.ForceStopInstance(ctx, name); err != nil {
		t.Fatalf("ForceStopInstance(stopped) = %v, want nil", err)
	}
	if _, err := c.Exec(ctx, name, ExecRequest{Command: []string{"true"}}, nil, nil); !IsBadRequest(err) {
		t.Fatalf("Exec(stopped) error = %v, want a 400", err)
	}
	if err := c.StartInstance(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteInstance(ctx, name); err != nil {
		t.Fatalf("DeleteInstance(running) = %v", err)
	}
	if _, err := c.GetInstance(ctx, name); !IsNotFound(err) {
		t.Fatalf("GetInstance(deleted) error = %v, want not found", err)
	}
	if err := c.DeleteInstance(ctx, name); err != nil {
		t.Fatalf("DeleteInstance(deleted) = %v, want nil", err)
	}
}

// lockedBuffer is a writer safe to read while Exec writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	hit chan struct{} // gets a value when the text "ready" arrives
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.hit != nil && strings.Contains(b.buf.String(), "ready") {
		select {
		case b.hit <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestIntegrationExec(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	name := launch(t, c, true, nil)

	tests := []struct {
		name       string
		req        ExecRequest
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "exit 0", req: ExecRequest{Command: []string{"true"}}},
		{name: "exit 1", req: ExecRequest{Command: []string{"false"}}, wantCode: 1},
		{name: "exit 3 with output", req: ExecRequest{Command: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}},
			wantCode: 3, wantStdout: "out\n", wantStderr: "err\n"},
		{name: "command not found", req: ExecRequest{Command: []string{"/no/such/command"}}, wantCode: 127},
		{name: "command not found in bash", req: ExecRequest{Command: []string{"bash", "--noprofile", "--norc", "-lc", "'no-such-command'"}},
			wantCode: 127, wantStderr: "bash: line 1: no-such-command: command not found\n"},
		{name: "stdout and stderr apart", req: ExecRequest{Command: []string{"sh", "-c", "for i in 1 2 3; do echo o$i; echo e$i >&2; done"}},
			wantStdout: "o1\no2\no3\n", wantStderr: "e1\ne2\ne3\n"},
		{name: "env", req: ExecRequest{Command: []string{"sh", "-c", `printf '%s|%s' "$JCI_A" "$JCI_B"`},
			Env: map[string]string{"JCI_A": "one two", "JCI_B": "it's"}}, wantStdout: "one two|it's"},
		{name: "cwd", req: ExecRequest{Command: []string{"pwd"}, Cwd: "/run/pika-cloud"}, wantStdout: "/run/pika-cloud\n"},
		// The job user of the runner image: pikaci (1000) in users (100).
		{name: "uid and gid", req: ExecRequest{Command: []string{"id"}, User: 1000, Group: 100, Cwd: "/home/pikaci"},
			wantStdout: "uid=1000(pikaci) gid=100(users) groups=100(users)\n"},
		{name: "root by default", req: ExecRequest{Command: []string{"id", "-u"}}, wantStdout: "0\n"},
		{name: "compiled command in bash", req: ExecRequest{Command: []string{"bash", "--noprofile", "--norc", "-lc", `echo "$BASH_VERSION" | cut -c1`}},
			wantStdout: "5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code, err := c.Exec(t.Context(), name, tc.req, &stdout, &stderr)
			if err != nil {
				t.Fatalf("Exec(%q) error = %v", tc.req.Command, err)
			}
			if code != tc.wantCode || stdout.String() != tc.wantStdout || stderr.String() != tc.wantStderr {
				t.Fatalf("Exec(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tc.req.Command,
					code, stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}

	t.Run("10 MB of output", func(t *testing.T) {
		const size = 10 << 20
		var stdout, stderr bytes.Buffer
		code, err := c.Exec(t.Context(), name, ExecRequest{Command: []string{"sh", "-c",
			fmt.Sprintf("yes 0123456789abcdef | head -c %d; echo done >&2", size)}}, &stdout, &stderr)
		if err != nil || code != 0 {
			t.Fatalf("Exec() = %d, %v", code, err)
		}
		want := bytes.Repeat([]byte("0123456789abcdef\n"), size/17+1)[:size]
		if stdout.Len() != size || !bytes.Equal(stdout.Bytes(), want) {
			t.Fatalf("stdout: %d bytes, equal to the expected ones: %v", stdout.Len(), bytes.Equal(stdout.Bytes(), want))
		}
		if stderr.String() != "done\n" {
			t.Fatalf("stderr = %q", stderr.String())
		}
	})

	t.Run("output is followed while the command runs", func(t *testing.T) {
		// The command waits for a file that the test pushes only once
		// "ready" has arrived: without live reading it never ends.
		flag := "/tmp/" + uniqueName("go-")
		stdout := &lockedBuffer{hit: make(chan struct{}, 1)}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		pushed := make(chan error, 1)
		go func() {
			select {
			case <-stdout.hit:
				pushed <- c.PushFile(ctx, name, flag, strings.NewReader("go"), FileOwner{Mode: 0o644})
			case <-ctx.Done():
				pushed <- ctx.Err()
			}
		}()
		code, err := c.Exec(ctx, name, ExecRequest{Command: []string{"sh", "-c",
			fmt.Sprintf("echo ready; while [ ! -e %s ]; do sleep 0.05; done; echo finished", flag)}}, stdout, nil)
		if err != nil || code != 0 {
			t.Fatalf("Exec() = %d, %v (stdout so far %q)", code, err, stdout.String())
		}
		if err := <-pushed; err != nil {
			t.Fatal(err)
		}
		if got := stdout.String(); got != "ready\nfinished\n" {
			t.Fatalf("stdout = %q", got)
		}
	})
}

func TestIntegrationFiles(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()
	name := launch(t, c, true, nil)

	data := make([]byte, 1<<20+17)
	rand.Read(data)
	tests := []struct {
		name string
		path string
		data []byte
		own  FileOwner
	}{
		{name: "binary as pikaci", path: "/home/pikaci/blob.bin", data: data, own: FileOwner{UID: 1000, GID: 1000, Mode: 0o640}},
		{name: "text as root", path: "/run/pika-cloud/guest-request.json", data: []byte(`{"schema_version":2}` + "\n"), own: FileOwner{Mode: 0o600}},
		{name: "executable", path: "/usr/local/bin/jci-hello", data: []byte("#!/bin/sh\necho hello\n"), own: FileOwner{Mode: 0o755}},
		{name: "empty", path: "/tmp/empty", data: []byte{}, own: FileOwner{Mode: 0o644}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.PushFile(ctx, name, tc.path, bytes.NewReader(tc.data), tc.own); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			info, err := c.PullFile(ctx, name, tc.path, &got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), tc.data) {
				t.Fatalf("pulled %d bytes, pushed %d; equal: false", got.Len(), len(tc.data))
			}
			want := FileInfo{UID: tc.own.UID, GID: tc.own.GID, Mode: tc.own.Mode, Type: "file"}
			if info != want {
				t.Fatalf("PullFile() info = %+v, want %+v", info, want)
			}
			var stat bytes.Buffer
			if _, err := c.Exec(ctx, name, ExecRequest{Command: []string{"stat", "-c", "%u %g %a %s", tc.path}}, &stat, nil); err != nil {
				t.Fatal(err)
			}
			if w := fmt.Sprintf("%d %d %o %d\n", tc.own.UID, tc.own.GID, tc.own.Mode.Perm(), len(tc.data)); stat.String() != w {
				t.Fatalf("stat in the guest = %q, want %q", stat.String(), w)
			}
		})
	}

	t.Run("pushed script runs", func(t *testing.T) {
		var out bytes.Buffer
		if code, err := c.Exec(ctx, name, ExecRequest{Command: []string{"jci-hello"}}, &out, nil); err != nil || code != 0 || out.String() != "hello\n" {
			t.Fatalf("Exec(jci-hello) = %d, %v, %q", code, err, out.String())
		}
	})

	t.Run("directories", func(t *testing.T) {
		dir := "/workspace/" + uniqueName("d-") + "/a/b"
		own := FileOwner{UID: 1000, GID: 1000, Mode: 0o750}
		if err := c.MkdirAll(ctx, name, dir, own); err != nil {
			t.Fatal(err)
		}
		if err := c.MkdirAll(ctx, name, dir, own); err != nil {
			t.Fatalf("MkdirAll(existing) = %v", err)
		}
		host := t.TempDir()
		if err := os.MkdirAll(host+"/sub", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(host+"/sub/f.txt", []byte("tree"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.PushTree(ctx, name, host, dir+"/tree", 1000, 1000); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := c.Exec(ctx, name, ExecRequest{Command: []string{"sh", "-c",
			"stat -c '%u %a' " + dir + "; stat -c '%u %a' " + dir + "/tree/sub/f.txt; cat " + dir + "/tree/sub/f.txt"}}, &out, nil); err != nil {
			t.Fatal(err)
		}
		if out.String() != "1000 750\n1000 600\ntree" {
			t.Fatalf("guest sees %q", out.String())
		}
		if _, err := c.PullFile(ctx, name, dir, io.Discard); err == nil {
			t.Fatal("PullFile(directory) succeeded, want an error")
		}
	})

	t.Run("missing file", func(t *testing.T) {
		if _, err := c.PullFile(ctx, name, "/no/such/file", io.Discard); !IsNotFound(err) {
			t.Fatalf("PullFile(missing) error = %v, want not found", err)
		}
		if err := c.DeleteFile(ctx, name, "/tmp/empty"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PullFile(ctx, name, "/tmp/empty", io.Discard); !IsNotFound(err) {
			t.Fatalf("PullFile(deleted) error = %v, want not found", err)
		}
	})
}

func TestIntegrationErrors(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()

	missing := uniqueName("jci-test-missing-")
	if _, err := c.GetInstance(ctx, missing); !IsNotFound(err) || !strings.Contains(err.Error(), "Instance not found") {
		t.Errorf("GetInstance(missing) error = %v, want a 404 with the server's reason", err)
	}
	if _, err := c.Exec(ctx, missing, ExecRequest{Command: []string{"true"}}, nil, nil); !IsNotFound(err) {
		t.Errorf("Exec(missing) error = %v, want not found", err)
	}
	if err := c.ForceStopInstance(ctx, missing); !IsNotFound(err) {
		t.Errorf("ForceStopInstance(missing) error = %v, want not found", err)
	}

	name := launch(t, c, false, nil)
	err := c.CreateInstance(ctx, InstancesPost{Name: name, Type: TypeContainer, Source: InstanceSource{Type: "image", Alias: itAlias}})
	if !IsConflict(err) || !strings.Contains(err.Error(), "UNIQUE constraint failed") {
		t.Errorf("CreateInstance(duplicate) error = %v, want a conflict with the server's reason", err)
	}

	alias := uniqueName("jci-test/missing-")
	if _, err := c.GetImageAlias(ctx, alias); !IsNotFound(err) {
		t.Errorf("GetImageAlias(missing) error = %v, want not found", err)
	}
	other := uniqueName("jci-test-")
	err = c.CreateInstance(ctx, InstancesPost{Name: other, Type: TypeContainer, Source: InstanceSource{Type: "image", Alias: alias}})
	if err == nil {
		c.DeleteInstance(context.WithoutCancel(ctx), other)
		t.Fatal("CreateInstance(missing alias) succeeded")
	}
	var oe *OperationError
	if !strings.Contains(err.Error(), other) || (StatusCode(err) == 0 && !errors.As(err, &oe)) {
		t.Errorf("CreateInstance(missing alias) error = %v, want a server error naming the instance", err)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestIntegrationVirtualMachineUnsupported(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()
	s, err := c.Server(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Supports(TypeVirtualMachine) {
		t.Skipf("this host runs virtual machines (driver %q): nothing to refuse", s.Environment.Driver)
	}
	if !s.Supports(TypeContainer) {
		t.Fatalf("server supports %q, want containers at least", s.InstanceTypes())
	}
	name := uniqueName("jci-test-vm-")
	err = c.CreateInstance(ctx, InstancesPost{Name: name, Type: TypeVirtualMachine, Source: InstanceSource{Type: "none"}})
	if err == nil {
		c.DeleteInstance(context.WithoutCancel(ctx), name)
		t.Fatal("CreateInstance(virtual-machine) succeeded on a host without VM support")
	}
	const prefix = `Instance type "virtual-machine" is not supported on this server: `
	msg := err.Error()
	i := strings.Index(msg, prefix)
	if i < 0 || strings.TrimSpace(msg[i+len(prefix):]) == "" {
		t.Fatalf("CreateInstance(virtual-machine) error = %q, want the server's reason after %q", msg, prefix)
	}
	if !strings.HasPrefix(msg, fmt.Sprintf("incus: create instance %q: ", name)) {
		t.Fatalf("error %q does not name the operation and instance", msg)
	}
}

func TestIntegrationListFilter(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()
	value := uniqueName("jci-")
	exact := launch(t, c, false, map[string]string{"user.jerichoci.test": value})
	upper := launch(t, c, false, map[string]string{"user.jerichoci.test": strings.ToUpper(value)})
	prefixed := launch(t, c, false, map[string]string{"user.jerichoci.test": value + "-more"})

	tests := []struct {
		name    string
		filters []Filter
		want    []string
	}{
		{name: "exact value only", filters: []Filter{{Field: "config.user.jerichoci.test", Value: value}}, want: []string{exact}},
		{name: "upper case is another value", filters: []Filter{{Field: "config.user.jerichoci.test", Value: strings.ToUpper(value)}}, want: []string{upper}},
		{name: "with name", filters: []Filter{{Field: "config.user.jerichoci.test", Value: value + "-more"}, {Field: "name", Value: prefixed}},
			want: []string{prefixed}},
		{name: "regex characters are literal", filters: []Filter{{Field: "config.user.jerichoci.test", Value: value[:len(value)-1] + "."}}, want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.ListInstances(ctx, tc.filters...)
			if err != nil {
				t.Fatal(err)
			}
			names := []string{}
			for _, i := range got {
				names = append(names, i.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("ListInstances(%v) = %q, want %q", tc.filters, names, tc.want)
			}
		})
	}
}

// testImage makes a small split container image; marker makes it unique.
func testImage(t *testing.T, marker string) (meta, rootfs []byte) {
	t.Helper()
	tarball := func(files map[string]string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, n := range []string{"metadata.yaml", "rootfs/", "rootfs/marker"} {
			body, ok := files[n]
			if !ok {
				continue
			}
			h := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}
			if strings.HasSuffix(n, "/") {
				h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, body)
		}
		tw.Close()
		return buf.Bytes()
	}
	meta = tarball(map[string]string{"metadata.yaml": "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: jci-test\n  description: " + marker + "\n"})
	rootfs = tarball(map[string]string{"rootfs/": "", "rootfs/marker": marker})
	return meta, rootfs
}

func TestIntegrationImages(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()
	detached := context.WithoutCancel(ctx)
	alias := uniqueName("jci-test/img-")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(detached, time.Minute)
		defer cancel()
		if err := c.DeleteImageAlias(ctx, alias); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	upload := func(up ImageUpload) string {
		t.Helper()
		fp, err := c.UploadImage(ctx, up)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(detached, time.Minute)
			defer cancel()
			if err := c.DeleteImage(ctx, fp); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		return fp
	}

	meta, rootfs := testImage(t, uniqueName("split-"))
	split := upload(ImageUpload{Unified: bytes.NewReader(meta), Rootfs: bytes.NewReader(rootfs), Filename: "meta.tar", RootfsName: "rootfs.tar"})
	if want := sha256Hex(append(append([]byte{}, meta...), rootfs...)); split != want {
		t.Fatalf("split image fingerprint = %s, want sha256(meta‖rootfs) = %s", split, want)
	}
	if err := c.CreateImageAlias(ctx, alias, split, "jci test"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateImageAlias(ctx, alias, split, "jci test"); !IsConflict(err) {
		t.Fatalf("CreateImageAlias(again) error = %v, want a conflict", err)
	}

	// A unified image: metadata.yaml and rootfs/ in one tarball.
	marker := uniqueName("unified-")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{"metadata.yaml", "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: jci-test\n"},
		{"rootfs/marker", marker},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Unix(1700000000, 0)})
		io.WriteString(tw, f.body)
	}
	tw.Close()
	unified := upload(ImageUpload{Unified: bytes.NewReader(buf.Bytes()), Filename: "image.tar", Properties: map[string]string{"jerichoci.test": marker}})
	if want := sha256Hex(buf.Bytes()); unified != want {
		t.Fatalf("unified image fingerprint = %s, want sha256 of the tarball %s", unified, want)
	}
	img, err := c.GetImage(ctx, unified)
	if err != nil {
		t.Fatal(err)
	}
	if img.Properties["jerichoci.test"] != marker || img.Properties["os"] != "jci-test" || img.Type != TypeContainer {
		t.Fatalf("GetImage() = type %q properties %v", img.Type, img.Properties)
	}

	if err := c.UpdateImageAlias(ctx, alias, unified, "jci test"); err != nil {
		t.Fatal(err)
	}
	a, err := c.GetImageAlias(ctx, alias)
	if err != nil || a.Target != unified {
		t.Fatalf("GetImageAlias() after retarget = %+v, %v; want target %s", a, err, unified)
	}
	if _, err := c.UploadImage(ctx, ImageUpload{Unified: bytes.NewReader(buf.Bytes())}); err == nil {
		t.Fatal("uploading the same bytes again succeeded, want the server's refusal")
	}
	if _, err := c.GetImage(ctx, strings.Repeat("0", 64)); !IsNotFound(err) {
		t.Fatalf("GetImage(missing) error = %v, want not found", err)
	}
}

// countingConn counts itself open until closed.
type countingConn struct {
	net.Conn
	once sync.Once
	open *atomic.Int64
}

func (c *countingConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// TestIntegrationNoConnectionLeaks runs every kind of call on a context
// that never ends (so no cancellation cleans up after us) and checks that
// Close leaves no connection open: every body was closed.
func TestIntegrationNoConnectionLeaks(t *testing.T) {
	realClient(t) // skips or fails when there is no daemon
	sock, err := SocketPath(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	var open atomic.Int64
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			return nil, err
		}
		open.Add(1)
		return &countingConn{Conn: conn, open: &open}, nil
	}}
	c := newClient(tr, "http://incus.socket", []Option{WithProject(itProject)})
	ctx := context.WithoutCancel(t.Context())

	name := uniqueName("jci-test-")
	defer func() {
		c.DeleteInstance(ctx, name) // when a step failed
		c.Close()
	}()
	if err := c.CreateInstance(ctx, InstancesPost{Name: name, Type: TypeContainer,
		Source: InstanceSource{Type: "image", Alias: itAlias}, Start: true}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		call func() error
	}{
		{"server", func() error { _, err := c.Server(ctx); return err }},
		{"get missing", func() error { _, err := c.GetInstance(ctx, name+"-x"); return ignore(err, IsNotFound) }},
		{"list", func() error { _, err := c.ListInstances(ctx, Filter{Field: "name", Value: name}); return err }},
		{"exec", func() error {
			_, err := c.Exec(ctx, name, ExecRequest{Command: []string{"sh", "-c", "echo o; echo e >&2; /nope"}}, io.Discard, io.Discard)
			return err
		}},
		{"exec not found", func() error {
			_, err := c.Exec(ctx, name, ExecRequest{Command: []string{"/nope"}}, nil, nil)
			return err
		}},
		{"push", func() error { return c.PushFile(ctx, name, "/tmp/f", strings.NewReader("x"), FileOwner{Mode: 0o644}) }},
		{"pull", func() error { _, err := c.PullFile(ctx, name, "/tmp/f", io.Discard); return err }},
		{"pull directory", func() error {
			_, err := c.PullFile(ctx, name, "/tmp", io.Discard)
			return ignore(err, func(err error) bool { return err != nil })
		}},
		{"pull missing", func() error { _, err := c.PullFile(ctx, name, "/nope", io.Discard); return ignore(err, IsNotFound) }},
		{"alias", func() error { _, err := c.GetImageAlias(ctx, itAlias); return err }},
		{"stop", func() error { return c.ForceStopInstance(ctx, name) }},
		{"delete", func() error { return c.DeleteInstance(ctx, name) }},
	}
	for _, s := range steps {
		if err := s.call(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after Close: a response body was not closed", open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ignore returns nil when expected(err), else err (or an error saying the
// expected error did not come).
func ignore(err error, expected func(error) bool) error {
	if expected(err) {
		return nil
	}
	if err == nil {
		return errors.New("no error, want one")
	}
	return err
}

// TestIntegrationBackendInstance creates an instance through the Backend
// as the executor does: its own root disk device of the asked size, in the
// pool of the profiles' root disk, and no guest API.
func TestIntegrationBackendInstance(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	ctx := t.Context()
	b := NewBackend(c)
	profiles := []string{"default", itProfile}
	root, err := b.RootDisk(ctx, profiles)
	if err != nil {
		t.Fatal(err)
	}
	// scripts/incus-up puts the root disk in the default profile, pool
	// default. The pool's driver is the one incus-up chose when it made
	// the pool (btrfs where the host can, else dir; an older machine may
	// keep its dir pool): RootDisk must report what incusd says of it.
	pool, err := c.GetStoragePool(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains([]string{"btrfs", "dir"}, pool.Driver) {
		t.Fatalf("pool default has driver %q: scripts/incus-up creates it with btrfs or dir", pool.Driver)
	}
	if want := (executor.RootDisk{Device: "root", Pool: "default", Driver: pool.Driver}); root != want {
		t.Fatalf("RootDisk() = %+v, want %+v", root, want)
	}

	name := uniqueName("jci-test-")
	detached := context.WithoutCancel(ctx)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(detached, 2*time.Minute)
		defer cancel()
		if err := b.DeleteInstance(ctx, name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	err = b.CreateInstance(ctx, executor.InstanceSpec{Name: name, Type: model.InstanceContainer, Alias: itAlias,
		Profiles: profiles, Config: map[string]string{"security.guestapi": "false"}, RootDiskSize: "3GiB", RootDisk: root})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := c.GetInstance(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"type": "disk", "path": "/", "pool": "default", "size": "3GiB"}
	if fmt.Sprint(inst.Devices["root"]) != fmt.Sprint(want) || fmt.Sprint(inst.ExpandedDevices["root"]) != fmt.Sprint(want) {
		t.Errorf("root device = %v, expanded %v; want %v", inst.Devices["root"], inst.ExpandedDevices["root"], want)
	}
	if inst.Config["security.guestapi"] != "false" || inst.Status != "Running" {
		t.Errorf("instance %s: security.guestapi %q, want false", inst.Status, inst.Config["security.guestapi"])
	}

	t.Run("no guest API in the guest", func(t *testing.T) {
		other := launch(t, c, true, nil) // the same image without the setting
		for _, tc := range []struct {
			instance string
			want     int
		}{{other, 0}, {name, 1}} {
			code, err := c.Exec(ctx, tc.instance, ExecRequest{Command: []string{"test", "-e", "/dev/incus"}}, nil, nil)
			if err != nil || code != tc.want {
				t.Errorf("test -e /dev/incus in %s = %d, %v; want %d", tc.instance, code, err, tc.want)
			}
		}
	})

	t.Run("pull with a limit", func(t *testing.T) {
		data := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
		if err := b.PushFile(ctx, name, "/run/pika-cloud/events.jsonl", data, 0, 0, 0o644); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			path    string
			limit   int64
			wantN   int
			wantErr string
		}{
			{name: "no limit", path: "/run/pika-cloud/events.jsonl", wantN: len(data)},
			{name: "under the limit", path: "/run/pika-cloud/events.jsonl", limit: 1 << 20, wantN: len(data)},
			{name: "over the limit", path: "/run/pika-cloud/events.jsonl", limit: 1000, wantN: 1000,
				wantErr: fmt.Sprintf(`incus: pull file "/run/pika-cloud/events.jsonl" from instance %q: file is larger than the limit of 1000 bytes`, name)},
			{name: "missing", path: "/run/pika-cloud/none", limit: 1000, wantErr: "not found"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var buf bytes.Buffer
				n, err := b.PullFile(ctx, name, tc.path, &buf, tc.limit)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("PullFile() error = %v, want %q", err, tc.wantErr)
					}
					if tc.name == "missing" && !errors.Is(err, executor.ErrNotFound) {
						t.Fatalf("PullFile(missing) error = %v, want ErrNotFound", err)
					}
				} else if err != nil {
					t.Fatal(err)
				}
				if n != int64(tc.wantN) || !bytes.Equal(buf.Bytes(), data[:tc.wantN]) {
					t.Fatalf("PullFile() = %d bytes (wrote %d), want the first %d", n, buf.Len(), tc.wantN)
				}
			})
		}
	})
}

// itJob is a pikaci-runner job of the integration tests running command,
// on an empty snapshot, its host.log in hostLog.
func itJob(t *testing.T, id, command string, hostLog *lockedBuffer) executor.Job {
	t.Helper()
	snapshot := t.TempDir()
	if err := os.Chmod(snapshot, 0o755); err != nil {
		t.Fatal(err)
	}
	role := model.RolePikaciRunner
	return executor.Job{RunID: uniqueName("run-"), ID: id, TimeoutSecs: 120, Command: model.Shell(command),
		Runtime: model.IncusRuntimeFor(role), Image: model.IncusImage{Role: role, Alias: itAlias, Recorded: &role},
		SnapshotDir: snapshot, JobDir: t.TempDir(), HostLog: hostLog}
}

// itConfig is the executor's defaults in the integration tests' project.
func itConfig() executor.Config {
	cfg := executor.DefaultConfig()
	cfg.Project, cfg.Profile, cfg.Owner = itProject, itProfile, "jci-test"
	return cfg
}

// TestIntegrationExecuteJob runs one job through the executor on the real
// daemon: a long line and more output than host.log repeats.
func TestIntegrationExecuteJob(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	var hostLog lockedBuffer
	job := itJob(t, "big-output", `head -c 300000 /dev/zero | tr '\0' x; echo; i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done; `+
		`if test -e /dev/incus; then echo guest-api; else echo no-guest-api; fi`, &hostLog)
	cfg := itConfig()
	cfg.HostLogRunnerBytes, cfg.RootDiskSize = 100_000, "3GiB"
	res, err := (&executor.RemoteLinuxVM{Backend: NewBackend(c), Config: cfg}).Execute(t.Context(), job)
	if err != nil {
		t.Fatalf("Execute() error = %v\nhost log:\n%.3000s", err, hostLog.String())
	}
	if res.Status != model.StatusPassed {
		t.Fatalf("Execute() = %+v\nhost log:\n%.3000s", res, hostLog.String())
	}
	hl := hostLog.String()
	// The size is enforced on btrfs (scripts/incus-up's choice on a fresh
	// machine), not on dir, where host.log says so.
	root, err := NewBackend(c).RootDisk(t.Context(), []string{"default", itProfile})
	if err != nil {
		t.Fatal(err)
	}
	if dirNote := "[pikaci] storage pool default (dir) cannot enforce the guest disk size 3GiB\n"; (root.Driver == "dir") != strings.Contains(hl, dirNote) {
		t.Errorf("pool driver %s, host log has the dir note: %v", root.Driver, strings.Contains(hl, dirNote))
	}
	for _, w := range []string{
		"[pikaci] runner output past 100000 bytes is not repeated in host.log; artifacts/guest.log has all of it\n",
		"[pikaci] guest runner exited with 0\n[pikaci] runner output: ",
	} {
		if !strings.Contains(hl, w) {
			t.Errorf("host log lacks %q:\n%.3000s", w, hl)
		}
	}
	if strings.Contains(hl, "line 1999") {
		t.Errorf("host log repeats output past the cap")
	}
	for _, l := range strings.SplitAfter(hl, "\n") {
		if len(l) > len("[runner:stdout] ")+64<<10+1 {
			t.Errorf("host log has a line of %d bytes", len(l))
		}
	}
	artifacts := filepath.Join(job.JobDir, "artifacts")
	guestLog, err := os.ReadFile(filepath.Join(artifacts, "guest.log"))
	if err != nil || len(guestLog) < 300_000 || !bytes.Contains(guestLog, []byte("line 1999\nno-guest-api\n")) {
		t.Errorf("guest.log: %d bytes, %v; want all of the output, without the guest API", len(guestLog), err)
	}
	for _, name := range []string{"events.jsonl", "status.json", "result.json"} {
		if fi, err := os.Stat(filepath.Join(artifacts, name)); err != nil || fi.Size() == 0 {
			t.Errorf("artifact %s: %v", name, err)
		}
	}
	// atomicfile writes guest.log under a hidden temporary name.
	if left, _ := filepath.Glob(filepath.Join(artifacts, ".guest.log.tmp-*")); len(left) > 0 {
		t.Errorf("guest.log's temporary file left behind: %q", left)
	}
	if _, err := c.GetInstance(t.Context(), model.InstanceName(job.RunID, job.ID)); !IsNotFound(err) {
		t.Errorf("instance left after the job: %v", err)
	}
}

// TestIntegrationExecWebsocket runs commands over the exec websockets of
// the real daemon: output and exit codes, output that arrives while the
// command runs, and cancellation that stops the guest's process (SIGTERM,
// and SIGKILL after the grace period for a command that ignores SIGTERM).
func TestIntegrationExecWebsocket(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	var name string
	t.Cleanup(func() {
		if name != "" {
			assertGone(t, c, name) // runs after launch's delete
		}
	})
	name = launch(t, c, true, map[string]string{executor.ConfigOwner: "jci-test-exec-ws"})

	t.Run("output and exit codes", func(t *testing.T) {
		tests := []struct {
			name       string
			cmd        []string
			wantCode   int
			wantStdout string
			wantStderr string
		}{
			{name: "echo", cmd: []string{"echo", "hello"}, wantStdout: "hello\n"},
			{name: "both streams and a code", cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 7"}, wantCode: 7, wantStdout: "out\n", wantStderr: "err\n"},
			{name: "stdin is closed", cmd: []string{"sh", "-c", "cat; echo eof"}, wantStdout: "eof\n"},
			{name: "not found", cmd: []string{"/no/such/command"}, wantCode: 127},
			{name: "not executable", cmd: []string{"/etc/hostname"}, wantCode: 126},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				var stdout, stderr bytes.Buffer
				code, err := c.Exec(ctx, name, ExecRequest{Command: tc.cmd}, &stdout, &stderr)
				if err != nil || code != tc.wantCode || stdout.String() != tc.wantStdout || stderr.String() != tc.wantStderr {
					t.Fatalf("Exec(%q) = %d, %v, stdout %q, stderr %q; want %d, nil, %q, %q", tc.cmd, code, err,
						stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
				}
			})
		}
	})

	// runUntil runs cmd, waits (bounded) for "ready" on its stdout, then
	// cancels; it returns the time to the first byte and Exec's error.
	runUntil := func(t *testing.T, cmd string, grace time.Duration) (time.Duration, error) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stdout := &lockedBuffer{hit: make(chan struct{}, 1)}
		start := time.Now()
		var firstByte time.Duration
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, err := c.Exec(ctx, name, ExecRequest{Command: []string{"sh", "-c", cmd}, KillGrace: grace}, stdout, nil)
			done <- result{code, err}
		}()
		select {
		case <-stdout.hit:
			firstByte = time.Since(start)
		case r := <-done:
			t.Fatalf("Exec() = %d, %v before the command said ready (stdout %q)", r.code, r.err, stdout.String())
		case <-time.After(time.Minute):
			cancel()
			r := <-done
			t.Fatalf("no ready in a minute; Exec() = %d, %v", r.code, r.err)
		}
		cancel()
		select {
		case r := <-done:
			if r.code != -1 || !errors.Is(r.err, context.Canceled) {
				t.Fatalf("Exec() after cancel = %d, %v; want -1 and context.Canceled", r.code, r.err)
			}
			return firstByte, r.err
		case <-time.After(2 * time.Minute):
			t.Fatal("Exec() did not return within 2 minutes of the cancel")
		}
		return 0, nil
	}
	// gone checks that the guest process whose pid is in file is gone.
	gone := func(t *testing.T, file string) {
		t.Helper()
		var out bytes.Buffer
		code, err := c.Exec(t.Context(), name, ExecRequest{Command: []string{"sh", "-c",
			fmt.Sprintf(`p=$(cat %s) && test -n "$p" || exit 2; if kill -0 "$p" 2>/dev/null; then echo "alive: $(cat /proc/$p/cmdline | tr '\0' ' ')"; exit 1; fi; echo "gone $p"`, file)}}, &out, &out)
		if err != nil || code != 0 {
			t.Fatalf("guest process of %s: %d, %v, %q; want gone", file, code, err, out.String())
		}
		t.Logf("guest process: %s", strings.TrimSpace(out.String()))
	}

	t.Run("first byte arrives while the command runs", func(t *testing.T) {
		firstByte, _ := runUntil(t, "echo ready; sleep 30", time.Second)
		t.Logf("first byte %v after the Exec call (POST, four websockets, start)", firstByte)
	})

	t.Run("cancel stops the guest command", func(t *testing.T) {
		pid := "/tmp/" + uniqueName("pid-")
		_, err := runUntil(t, fmt.Sprintf("echo $$ > %s; echo ready; exec sleep 300", pid), time.Minute)
		if !strings.Contains(err.Error(), "command stopped with SIGTERM: context canceled") {
			t.Errorf("Exec() error = %v, want SIGTERM alone to stop it", err)
		}
		gone(t, pid)
	})

	t.Run("a command that ignores SIGTERM gets SIGKILL", func(t *testing.T) {
		pid := "/tmp/" + uniqueName("pid-")
		_, err := runUntil(t, fmt.Sprintf("trap '' TERM; echo $$ > %s; echo ready; while :; do sleep 1; done", pid), 500*time.Millisecond)
		if !strings.Contains(err.Error(), "command stopped with SIGTERM, then SIGKILL after 500ms: context canceled") {
			t.Errorf("Exec() error = %v, want SIGKILL after the grace", err)
		}
		gone(t, pid)
	})
}

// probeBackend looks into the job's instance just before it is deleted:
// is the job's command (its pid in /tmp/jci-pid) still running?
type probeBackend struct {
	executor.Backend
	c       *Client
	mu      sync.Mutex
	created bool
	probe   string
}

func (p *probeBackend) CreateInstance(ctx context.Context, spec executor.InstanceSpec) error {
	err := p.Backend.CreateInstance(ctx, spec)
	p.mu.Lock()
	p.created = true
	p.mu.Unlock()
	return err
}

func (p *probeBackend) DeleteInstance(ctx context.Context, name string) error {
	p.mu.Lock()
	probe := p.created && p.probe == ""
	p.mu.Unlock()
	if probe {
		var out lockedBuffer
		_, err := p.c.Exec(ctx, name, ExecRequest{Command: []string{"sh", "-c",
			`p=$(cat /tmp/jci-pid); if [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status; then echo "alive $p"; else echo "gone $p"; fi`}}, &out, &out)
		p.mu.Lock()
		p.probe = strings.TrimSpace(out.String())
		if err != nil {
			p.probe = "probe failed: " + err.Error()
		}
		p.mu.Unlock()
	}
	return p.Backend.DeleteInstance(ctx, name)
}

// TestIntegrationCancelAndTimeoutStopTheGuestCommand shows, on the real
// daemon, that a cancelled and a timed-out job's command is gone while its
// instance still runs: the exec's SIGTERM reaches the guest runner, which
// takes the command's process group down before the instance is deleted.
func TestIntegrationCancelAndTimeoutStopTheGuestCommand(t *testing.T) {
	t.Parallel()
	c := realClient(t)
	for _, tc := range []struct {
		name    string
		timeout uint64
		cancel  bool
	}{
		{"cancel", 120, true},
		{"timeout", 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snapshot := t.TempDir()
			if err := os.Chmod(snapshot, 0o755); err != nil {
				t.Fatal(err)
			}
			var hostLog lockedBuffer
			role := model.RolePikaciRunner
			job := executor.Job{RunID: uniqueName("run-"), ID: "stop-" + tc.name, TimeoutSecs: tc.timeout,
				Command: model.Shell(`trap '' TERM; echo $$ > /tmp/jci-pid; echo started; while :; do sleep 1; done`),
				Runtime: model.IncusRuntimeFor(role), Image: model.IncusImage{Role: role, Alias: itAlias, Recorded: &role},
				SnapshotDir: snapshot, JobDir: t.TempDir(), HostLog: &hostLog}
			cfg := executor.DefaultConfig()
			cfg.Project, cfg.Profile, cfg.Owner, cfg.RootDiskSize = itProject, itProfile, "jci-test", ""
			be := &probeBackend{Backend: NewBackend(c), c: c}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				go func() {
					for !strings.Contains(hostLog.String(), "[runner:stdout] started") {
						time.Sleep(50 * time.Millisecond)
					}
					cancel()
				}()
			}
			res, err := (&executor.RemoteLinuxVM{Backend: be, Config: cfg}).Execute(ctx, job)
			t.Logf("%s: result %+v, err %v; before delete: %s", tc.name, res, err, be.probe)
			if tc.cancel && !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled job: err = %v, want context.Canceled", err)
			}
			if !tc.cancel && (err != nil || res.Message != fmt.Sprintf("timed out after %ds", tc.timeout)) {
				t.Errorf("timed-out job: %+v, %v", res, err)
			}
			if !strings.HasPrefix(be.probe, "gone ") {
				t.Errorf("before its instance was deleted, the job's command was %q, want gone\nhost log:\n%.3000s", be.probe, hostLog.String())
			}
			if _, err := c.GetInstance(context.WithoutCancel(ctx), model.InstanceName(job.RunID, job.ID)); !IsNotFound(err) {
				t.Errorf("instance left after the job: %v", err)
			}
		})
	}
}
