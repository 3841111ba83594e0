package incus

import (
	"bytes"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

func TestPushFileHeaders(t *testing.T) {
	tests := []struct {
		name     string
		push     func(c *Client) error
		wantType string
		wantMode string
		wantBody string
		wantPath string
	}{
		{
			name: "file",
			push: func(c *Client) error {
				return c.PushFile(t.Context(), "r1", "/home/pikaci/a.txt", strings.NewReader("data"), FileOwner{UID: 1000, GID: 1000, Mode: 0o640})
			},
			wantType: "file", wantMode: "0640", wantBody: "data", wantPath: "/home/pikaci/a.txt",
		},
		{
			name: "directory with sticky bit",
			push: func(c *Client) error {
				return c.Mkdir(t.Context(), "r1", "/tmp/x", FileOwner{Mode: 0o777 | fs.ModeSticky})
			},
			wantType: "directory", wantMode: "1777", wantPath: "/tmp/x",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var got http.Header
			var body, path string
			f.handle("POST", "/1.0/instances/r1/files", func(w http.ResponseWriter, r *http.Request) {
				got = r.Header.Clone()
				body = string(readAll(r))
				path = r.URL.Query().Get("path")
				w.Write(fixture(t, "sync_empty.json"))
			})
			if err := tc.push(f.client()); err != nil {
				t.Fatal(err)
			}
			if ct := got.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("Content-Type = %q: without octet-stream the server writes an empty file", ct)
			}
			if got.Get("X-Incus-Type") != tc.wantType || got.Get("X-Incus-Mode") != tc.wantMode || got.Get("X-Incus-Write") != "overwrite" {
				t.Errorf("headers = %v", got)
			}
			if body != tc.wantBody || path != tc.wantPath {
				t.Errorf("pushed %q to %q, want %q to %q", body, path, tc.wantBody, tc.wantPath)
			}
		})
	}
	t.Run("relative path", func(t *testing.T) {
		f := newFake(t)
		err := f.client().PushFile(t.Context(), "r1", "a.txt", strings.NewReader(""), FileOwner{})
		if err == nil || !strings.Contains(err.Error(), "not absolute") {
			t.Fatalf("PushFile() error = %v", err)
		}
	})
}

func TestPullFile(t *testing.T) {
	f := newFake(t)
	f.handle("GET", "/1.0/instances/r1/files", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("path") != "/etc/hostname" {
			w.WriteHeader(404)
			w.Write(fixture(t, "error_404.json"))
			return
		}
		w.Header().Set("X-Incus-Uid", "1000")
		w.Header().Set("X-Incus-Gid", "100")
		w.Header().Set("X-Incus-Mode", "0640")
		w.Header().Set("X-Incus-Type", "file")
		w.Write([]byte("r1\n"))
	})
	c := f.client()
	var buf bytes.Buffer
	info, err := c.PullFile(t.Context(), "r1", "/etc/hostname", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != "r1\n" || info != (FileInfo{UID: 1000, GID: 100, Mode: 0o640, Type: "file"}) {
		t.Fatalf("PullFile() = %q, %+v", buf.String(), info)
	}
	if _, err := c.PullFile(t.Context(), "r1", "/nope", io.Discard); !IsNotFound(err) {
		t.Fatalf("PullFile(missing) error = %v, want not found", err)
	}
}

func TestUploadImage(t *testing.T) {
	tests := []struct {
		name      string
		up        ImageUpload
		wantParts []string // "" = unified upload
	}{
		{name: "unified", up: ImageUpload{Unified: strings.NewReader("TARBALL"), Filename: "image.tar.gz"}},
		{name: "split container", up: ImageUpload{Unified: strings.NewReader("META"), Rootfs: strings.NewReader("ROOTFS"), RootfsName: "rootfs.tar.xz"},
			wantParts: []string{"metadata=META", "rootfs=ROOTFS"}},
		{name: "split vm", up: ImageUpload{Unified: strings.NewReader("META"), Rootfs: strings.NewReader("QCOW"), RootfsName: "disk.qcow2", VM: true},
			wantParts: []string{"metadata=META", "rootfs.img=QCOW"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var ctype, public string
			var parts []string
			var body string
			f.handle("POST", "/1.0/images", func(w http.ResponseWriter, r *http.Request) {
				ctype, public = r.Header.Get("Content-Type"), r.Header.Get("X-Incus-Public")
				mt, params, _ := mime.ParseMediaType(ctype)
				if mt == "multipart/form-data" {
					mr := multipart.NewReader(r.Body, params["boundary"])
					for {
						p, err := mr.NextPart()
						if err != nil {
							break
						}
						b, _ := io.ReadAll(p)
						parts = append(parts, p.FormName()+"="+string(b))
					}
				} else {
					body = string(readAll(r))
				}
				w.WriteHeader(202)
				w.Write(fixture(t, "image_upload_async.json"))
			})
			f.reply("GET", "/1.0/operations/9f3a4d7e-0c11-4b53-8a21-3c6de4a1b001/wait", 200, "operation_image_upload_success.json")
			fp, err := f.client().UploadImage(t.Context(), tc.up)
			if err != nil {
				t.Fatal(err)
			}
			if fp != "5fe8825bdf00595827f224ca2d6a28c371bb3a7501b52cfff510711a769b80e4" {
				t.Errorf("fingerprint = %q", fp)
			}
			if public != "false" {
				t.Errorf("X-Incus-Public = %q, want false", public)
			}
			if tc.wantParts == nil {
				if ctype != "application/octet-stream" || body != "TARBALL" {
					t.Errorf("unified upload sent %q as %q", body, ctype)
				}
				return
			}
			if strings.Join(parts, ",") != strings.Join(tc.wantParts, ",") {
				t.Errorf("parts = %q, want %q", parts, tc.wantParts)
			}
		})
	}
}

func TestUploadImageFailureEndsWriter(t *testing.T) {
	f := newFake(t)
	f.handle("POST", "/1.0/images", func(w http.ResponseWriter, r *http.Request) {
		// Answer without reading the body.
		w.WriteHeader(500)
		w.Write(fixture(t, "error_500.json"))
	})
	big := bytes.Repeat([]byte("x"), 8<<20)
	_, err := f.client().UploadImage(t.Context(), ImageUpload{Unified: bytes.NewReader(big), Rootfs: bytes.NewReader(big)})
	if StatusCode(err) != 500 {
		t.Fatalf("UploadImage() error = %v, want the 500", err)
	}
}

func TestImageAliases(t *testing.T) {
	f := newFake(t)
	f.reply("GET", "/1.0/images/aliases/pikaci/dev", 200, "image_alias.json")
	var put, post string
	f.handle("PUT", "/1.0/images/aliases/pikaci/dev", func(w http.ResponseWriter, r *http.Request) {
		put = string(readAll(r))
		w.Write(fixture(t, "sync_empty.json"))
	})
	f.handle("POST", "/1.0/images/aliases", func(w http.ResponseWriter, r *http.Request) {
		post = string(readAll(r))
		w.WriteHeader(409)
		w.Write([]byte(`{"type":"error","error_code":409,"error":"Alias \"pikaci/dev\" already exists"}`))
	})
	c := f.client()
	a, err := c.GetImageAlias(t.Context(), "pikaci/dev")
	if err != nil || a.Target != "5fe8825bdf00595827f224ca2d6a28c371bb3a7501b52cfff510711a769b80e4" || a.Type != "container" {
		t.Fatalf("GetImageAlias() = %+v, %v", a, err)
	}
	if _, err := c.GetImageAlias(t.Context(), "nope/dev"); !IsNotFound(err) {
		t.Fatalf("GetImageAlias(missing) error = %v, want not found", err)
	}
	if err := c.CreateImageAlias(t.Context(), "pikaci/dev", "abc", "d"); !IsConflict(err) {
		t.Fatalf("CreateImageAlias(existing) error = %v, want conflict", err)
	}
	if post != `{"description":"d","name":"pikaci/dev","target":"abc"}` {
		t.Errorf("create body = %s", post)
	}
	if err := c.UpdateImageAlias(t.Context(), "pikaci/dev", "def", "d"); err != nil {
		t.Fatal(err)
	}
	if put != `{"description":"d","target":"def"}` {
		t.Errorf("update body = %s", put)
	}
	escaped := 0
	for _, r := range f.requests() {
		if strings.Contains(r, "aliases/pikaci/dev") {
			t.Errorf("request %q sent the alias slash unescaped", r)
		}
		if strings.Contains(r, "aliases/pikaci%2Fdev") {
			escaped++
		}
	}
	if escaped != 2 {
		t.Errorf("%d requests with the escaped alias, want 2 (get, update)", escaped)
	}
}

// greedyWriter would read a whole body itself if the copy let it
// (io.ReaderFrom, as bytes.Buffer does); it records the largest write.
type greedyWriter struct {
	t       *testing.T
	n       int
	largest int
}

func (g *greedyWriter) Write(p []byte) (int, error) {
	g.n += len(p)
	g.largest = max(g.largest, len(p))
	return len(p), nil
}

func (g *greedyWriter) ReadFrom(r io.Reader) (int64, error) {
	g.t.Error("PullFile let the writer read the body itself")
	b, err := io.ReadAll(r)
	g.n += len(b)
	return int64(len(b)), err
}

func TestPullFileBoundedBuffer(t *testing.T) {
	const size = 8 << 20
	f := newFake(t)
	f.handle("GET", "/1.0/instances/r1/files", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Incus-Type", "file")
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range size / len(chunk) {
			w.Write(chunk)
		}
	})
	g := &greedyWriter{t: t}
	if _, err := f.client().PullFile(t.Context(), "r1", "/run/pika-cloud/logs/guest.log", g); err != nil {
		t.Fatal(err)
	}
	if g.n != size || g.largest > copyBufferSize {
		t.Fatalf("PullFile() wrote %d bytes, the largest write %d; want %d in writes of at most %d", g.n, g.largest, size, copyBufferSize)
	}
}
