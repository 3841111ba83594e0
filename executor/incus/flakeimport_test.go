package incus

import (
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"jerichoci/images"
)

// TestImageStoreUploadsWithProperties: a store made WithProperties sends
// them as X-Incus-Properties beside the split parts of the original's VM
// layout (metadata, then the disk as rootfs.img), and a plain store sends
// none.
func TestImageStoreUploadsWithProperties(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"metadata.tar.xz": "META", "disk.qcow2": "QCOW", "README.txt": "readme"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := images.FindArtifact(dir)
	if err != nil {
		t.Fatal(err)
	}
	props := map[string]string{images.RoleProperty: "pikaci-runner", images.FlakeAttrProperty: "pikaci-runner-incus-image",
		images.FlakeOutputProperty: "/nix/store/abc-pikaci-runner-incus-image"}
	tests := []struct {
		name  string
		store func(*Client) ImageStore
		want  url.Values // nil: no header
	}{
		{name: "with properties", store: func(c *Client) ImageStore { return NewImageStore(c).WithProperties(props) },
			want: url.Values{"jerichoci.role": {"pikaci-runner"}, "jerichoci.flake.attr": {"pikaci-runner-incus-image"},
				"jerichoci.flake.output": {"/nix/store/abc-pikaci-runner-incus-image"}}},
		{name: "plain", store: NewImageStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var header string
			var hasHeader bool
			var parts []string
			f.handle("POST", "/1.0/images", func(w http.ResponseWriter, r *http.Request) {
				_, hasHeader = r.Header["X-Incus-Properties"]
				header = r.Header.Get("X-Incus-Properties")
				_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
				mr := multipart.NewReader(r.Body, params["boundary"])
				for {
					p, err := mr.NextPart()
					if err != nil {
						break
					}
					b, _ := io.ReadAll(p)
					parts = append(parts, p.FormName()+":"+p.FileName()+"="+string(b))
				}
				w.WriteHeader(202)
				w.Write(fixture(t, "image_upload_async.json"))
			})
			f.reply("GET", "/1.0/operations/9f3a4d7e-0c11-4b53-8a21-3c6de4a1b001/wait", 200, "operation_image_upload_success.json")
			if _, err := tc.store(f.client()).Upload(t.Context(), a); err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(parts, ","), "metadata:metadata.tar.xz=META,rootfs.img:disk.qcow2=QCOW"; got != want {
				t.Errorf("parts = %q, want %q", got, want)
			}
			if tc.want == nil {
				if hasHeader {
					t.Errorf("X-Incus-Properties = %q, want none", header)
				}
				return
			}
			got, err := url.ParseQuery(header)
			if err != nil || got.Encode() != tc.want.Encode() {
				t.Errorf("X-Incus-Properties = %q (%v), want %q", header, err, tc.want.Encode())
			}
		})
	}
}
