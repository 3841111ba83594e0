package incus

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"jerichoci/internal/itest"
)

// httpsClient is a TLS client of the local incusd over h for cert, pinned
// to serverCert, in project.
func httpsClient(t *testing.T, url string, cert itest.ClientCert, serverCert, project string) *Client {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	c, err := NewTLS(url, TLSConfig{ClientCert: read(cert.Cert), ClientKey: read(cert.Key), ServerCert: read(serverCert)}, WithProject(project))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHTTPSAccessReal reaches the real incusd over HTTPS with client
// certificates it trusts restricted to a project (as scripts/incus-up
// --https sets up), trusts for another project only, or does not trust,
// and with a wrong pinned server certificate or address: CheckAccess lets
// only the first through, and names each other cause.
func TestHTTPSAccessReal(t *testing.T) {
	unix := realClient(t)
	h := itest.StartIncusHTTPS(t)
	name := fmt.Sprintf("jci-test-https-%d", os.Getpid())
	ours := h.TrustedClientCert(t, name+"-ours", itProject)
	other := h.TrustedClientCert(t, name+"-other", "default")
	untrusted := h.NewClientCert(t, name+"-untrusted")
	otherServer := h.NewClientCert(t, name+"-not-incusd") // any other certificate to pin
	unreachable := fmt.Sprintf("https://127.0.0.1:%d", itest.FreePort(t))

	tests := []struct {
		name       string
		url        string
		cert       itest.ClientCert
		serverCert string
		want       AccessCause // 0: access granted
		wantText   []string
	}{
		{"trusted for the project", h.URL, ours, h.ServerCert, 0, nil},
		{"not trusted", h.URL, untrusted, h.ServerCert, CauseUntrusted,
			[]string{"does not trust our client certificate " + untrusted.Fingerprint[:12], "--restricted --projects " + itProject}},
		{"trusted for another project", h.URL, other, h.ServerCert, CauseOtherProject,
			[]string{"trusts our client certificate " + other.Fingerprint[:12] + ", but not for project " + itProject, "restricted to other projects"}},
		{"another server certificate pinned", h.URL, ours, otherServer.Cert, CauseServerCert,
			[]string{"not the pinned one " + otherServer.Fingerprint[:12], "server.crt"}},
		{"nothing listens", unreachable, ours, h.ServerCert, CauseUnreachable,
			[]string{"is unreachable", "connection refused", "core.https_address"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := httpsClient(t, tc.url, tc.cert, tc.serverCert, itProject)
			err := c.CheckAccess(t.Context())
			if tc.want == 0 {
				if err != nil {
					t.Fatalf("CheckAccess() = %v, want nil", err)
				}
				// And it really works in the project, over HTTPS.
				insts, err := c.ListInstances(t.Context())
				if err != nil {
					t.Fatalf("ListInstances over HTTPS: %v", err)
				}
				viaUnix, err := unix.ListInstances(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d instances over HTTPS, %d over the socket", len(insts), len(viaUnix))
				return
			}
			var ae *AccessError
			if !errors.As(err, &ae) || ae.Cause != tc.want {
				t.Fatalf("CheckAccess() = %v, want an AccessError of cause %d", err, tc.want)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message lacks %q:\n%s", s, err)
				}
			}
			t.Logf("refused: %v", err)
		})
	}
}
