package incus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"jerichoci/executor"
	"jerichoci/model"
)

// syncJSON answers a sync envelope with metadata.
func syncJSON(metadata string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":%s}`, metadata)
	}
}

func TestBackendRootDisk(t *testing.T) {
	const (
		defaultProfile = `{"name":"default","project":"p","config":{},"devices":{"eth0":{"type":"nic","network":"incusbr0","name":"eth0"},"root":{"type":"disk","path":"/","pool":"default"}}}`
		agentEmpty     = `{"name":"agent","project":"p","config":{},"devices":{}}`
		agentRoot      = `{"name":"agent","project":"p","config":{},"devices":{"data":{"type":"disk","path":"/data","source":"/srv"},"rootfs":{"type":"disk","path":"/","pool":"fast","size":"5GiB"}}}`
		noRoot         = `{"name":"default","project":"p","config":{},"devices":{"eth0":{"type":"nic","network":"incusbr0"}}}`
		noPool         = `{"name":"default","project":"p","config":{},"devices":{"root":{"type":"disk","path":"/"}}}`
	)
	tests := []struct {
		name         string
		profiles     map[string]string // name -> metadata; a missing one is a 404
		want         executor.RootDisk
		wantErr      string
		wantNotFound bool
		wantRequests []string
	}{
		{name: "from the first profile", profiles: map[string]string{"default": defaultProfile, "agent": agentEmpty},
			want:         executor.RootDisk{Device: "root", Pool: "default", Driver: "dir"},
			wantRequests: []string{"GET /1.0/profiles/default?project=p", "GET /1.0/profiles/agent?project=p", "GET /1.0/storage-pools/default?project=p"}},
		{name: "the last profile with a root disk wins", profiles: map[string]string{"default": defaultProfile, "agent": agentRoot},
			want:         executor.RootDisk{Device: "rootfs", Pool: "fast", Driver: "btrfs"},
			wantRequests: []string{"GET /1.0/profiles/default?project=p", "GET /1.0/profiles/agent?project=p", "GET /1.0/storage-pools/fast?project=p"}},
		{name: "no root disk", profiles: map[string]string{"default": noRoot, "agent": agentEmpty},
			wantErr: `incus: profiles ["default" "agent"] in project "p" have no root disk device (type disk, path /)`},
		{name: "root disk without a pool", profiles: map[string]string{"default": noPool, "agent": agentEmpty},
			wantErr: `incus: root disk device "root" of profiles ["default" "agent"] in project "p" names no pool`},
		{name: "missing profile", profiles: map[string]string{"default": defaultProfile},
			wantErr: `incus: get profile "agent": `, wantNotFound: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			for name, body := range tc.profiles {
				f.handle("GET", "/1.0/profiles/"+name, syncJSON(body))
			}
			f.handle("GET", "/1.0/storage-pools/default", syncJSON(`{"name":"default","driver":"dir","status":"Created","config":{}}`))
			f.handle("GET", "/1.0/storage-pools/fast", syncJSON(`{"name":"fast","driver":"btrfs","status":"Created","config":{}}`))
			b := NewBackend(f.client())
			for i := range 2 {
				got, err := b.RootDisk(t.Context(), []string{"default", "agent"})
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, executor.ErrNotFound) != tc.wantNotFound {
						t.Fatalf("RootDisk() error = %v, want %q (not found: %v)", err, tc.wantErr, tc.wantNotFound)
					}
					continue
				}
				if err != nil || got != tc.want {
					t.Fatalf("RootDisk() call %d = %+v, %v; want %+v", i+1, got, err, tc.want)
				}
			}
			if tc.wantErr != "" {
				// A failed lookup is not kept: the second call asked again.
				if n := strings.Count(strings.Join(f.requests(), "\n"), "GET /1.0/profiles/default"); n != 2 {
					t.Errorf("profile default asked %d times, want 2", n)
				}
				return
			}
			// The second call was answered from the cache.
			if got := f.requests(); strings.Join(got, "\n") != strings.Join(tc.wantRequests, "\n") {
				t.Errorf("requests = %q, want %q", got, tc.wantRequests)
			}
		})
	}

	t.Run("each backend in its own project, cached per profiles", func(t *testing.T) {
		f := newFake(t)
		f.handle("GET", "/1.0/profiles/default", syncJSON(defaultProfile))
		f.handle("GET", "/1.0/profiles/agent", syncJSON(agentRoot))
		f.handle("GET", "/1.0/storage-pools/default", syncJSON(`{"name":"default","driver":"dir"}`))
		f.handle("GET", "/1.0/storage-pools/fast", syncJSON(`{"name":"fast","driver":"btrfs"}`))
		backends := map[string]*Backend{"p": NewBackend(f.client()), "other": NewBackend(f.client(WithProject("other")))}
		for _, c := range []struct {
			project  string
			profiles []string
			pool     string
		}{
			{"p", []string{"default"}, "default"},
			{"p", []string{"default", "agent"}, "fast"},
			{"other", []string{"default"}, "default"},
			{"p", []string{"default"}, "default"},
			{"other", []string{"default"}, "default"},
		} {
			got, err := backends[c.project].RootDisk(t.Context(), c.profiles)
			if err != nil || got.Pool != c.pool {
				t.Fatalf("RootDisk(%s, %q) = %+v, %v; want pool %s", c.project, c.profiles, got, err, c.pool)
			}
		}
		want := []string{
			"GET /1.0/profiles/default?project=p", "GET /1.0/storage-pools/default?project=p",
			"GET /1.0/profiles/default?project=p", "GET /1.0/profiles/agent?project=p", "GET /1.0/storage-pools/fast?project=p",
			"GET /1.0/profiles/default?project=other", "GET /1.0/storage-pools/default?project=other",
		}
		if got := f.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("requests = %q, want %q", got, want)
		}
	})
}

func TestBackendCreateInstanceBody(t *testing.T) {
	tests := []struct {
		name        string
		spec        executor.InstanceSpec
		wantDevices map[string]map[string]string
		wantLookup  bool
	}{
		{name: "root disk given",
			spec: executor.InstanceSpec{RootDiskSize: "20GiB", RootDisk: executor.RootDisk{Device: "rootfs", Pool: "fast", Driver: "btrfs"}},
			wantDevices: map[string]map[string]string{
				"rootfs": {"type": "disk", "path": "/", "pool": "fast", "size": "20GiB"}}},
		{name: "root disk looked up", spec: executor.InstanceSpec{RootDiskSize: "512MiB"}, wantLookup: true,
			wantDevices: map[string]map[string]string{
				"root": {"type": "disk", "path": "/", "pool": "default", "size": "512MiB"}}},
		{name: "no size", spec: executor.InstanceSpec{RootDisk: executor.RootDisk{Device: "root", Pool: "default"}}},
		{name: "with a snapshot disk",
			spec: executor.InstanceSpec{RootDiskSize: "1073741824", RootDisk: executor.RootDisk{Pool: "default"},
				Disks: []executor.Disk{{Name: "snap", Source: "/srv/snap", Path: "/workspace/snapshot", ReadOnly: true}}},
			wantDevices: map[string]map[string]string{
				"root": {"type": "disk", "path": "/", "pool": "default", "size": "1073741824"},
				"snap": {"type": "disk", "source": "/srv/snap", "path": "/workspace/snapshot", "readonly": "true", "shift": "false"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var body []byte
			f.handle("POST", "/1.0/instances", func(w http.ResponseWriter, r *http.Request) {
				body = readAll(r)
				w.WriteHeader(202)
				w.Write(fixture(t, "async_create.json"))
			})
			f.reply("GET", opPath+"/wait", 200, "operation_success.json")
			f.handle("GET", "/1.0/profiles/default", syncJSON(`{"name":"default","devices":{"root":{"type":"disk","path":"/","pool":"default"}}}`))
			f.handle("GET", "/1.0/profiles/pika-agent-dev", syncJSON(`{"name":"pika-agent-dev","devices":{}}`))
			f.handle("GET", "/1.0/storage-pools/default", syncJSON(`{"name":"default","driver":"dir"}`))
			spec := tc.spec
			spec.Name, spec.Type, spec.Alias = "r1", model.InstanceContainer, "pikaci/dev"
			spec.Profiles = []string{"default", "pika-agent-dev"}
			spec.Config = map[string]string{"security.guestapi": "false"}
			if err := NewBackend(f.client()).CreateInstance(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			var got InstancesPost
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("request body %s: %v", body, err)
			}
			if fmt.Sprint(got.Devices) != fmt.Sprint(tc.wantDevices) {
				t.Errorf("devices = %v, want %v", got.Devices, tc.wantDevices)
			}
			if got.Config["security.guestapi"] != "false" || !got.Start || strings.Join(got.Profiles, ",") != "default,pika-agent-dev" {
				t.Errorf("request body = %s", body)
			}
			if looked := strings.Contains(strings.Join(f.requests(), "\n"), "/1.0/profiles/"); looked != tc.wantLookup {
				t.Errorf("looked up the profiles: %v, want %v (requests %q)", looked, tc.wantLookup, f.requests())
			}
		})
	}
}

func TestBackendPullFileLimit(t *testing.T) {
	content := strings.Repeat("0123456789", 10_000) // 100,000 bytes
	tests := []struct {
		name         string
		path         string
		limit        int64
		wantN        int64
		wantErr      string
		wantNotFound bool
	}{
		{name: "no limit", path: "/run/pika-cloud/logs/guest.log", limit: 0, wantN: 100_000},
		{name: "negative is no limit", path: "/run/pika-cloud/logs/guest.log", limit: -1, wantN: 100_000},
		{name: "exactly the limit", path: "/run/pika-cloud/events.jsonl", limit: 100_000, wantN: 100_000},
		{name: "over the limit", path: "/run/pika-cloud/events.jsonl", limit: 1000, wantN: 1000,
			wantErr: `incus: pull file "/run/pika-cloud/events.jsonl" from instance "r1": file is larger than the limit of 1000 bytes`},
		{name: "over the limit, in the first buffer", path: "/run/pika-cloud/events.jsonl", limit: 40_000, wantN: 40_000,
			wantErr: "file is larger than the limit of 40000 bytes"},
		{name: "missing", path: "/nope", limit: 1000, wantErr: `incus: pull file "/nope" from instance "r1": `, wantNotFound: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.handle("GET", "/1.0/instances/r1/files", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("path") == "/nope" {
					w.WriteHeader(404)
					w.Write(fixture(t, "error_404.json"))
					return
				}
				w.Header().Set("X-Incus-Type", "file")
				w.Write([]byte(content))
			})
			var buf bytes.Buffer
			n, err := NewBackend(f.client()).PullFile(t.Context(), "r1", tc.path, &buf, tc.limit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, executor.ErrNotFound) != tc.wantNotFound {
					t.Fatalf("PullFile() error = %v, want %q (not found: %v)", err, tc.wantErr, tc.wantNotFound)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if n != tc.wantN || int64(buf.Len()) != tc.wantN || buf.String() != content[:tc.wantN] {
				t.Errorf("PullFile() wrote %d bytes (returned %d), want the first %d", buf.Len(), n, tc.wantN)
			}
		})
	}
}
