package incus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAccessErrorWording: each cause names itself, the server, and what
// to do about it.
func TestAccessErrorWording(t *testing.T) {
	const srv, fp = "https://incus.example:8443", "0123456789abcdef0123"
	tests := []struct {
		name string
		err  AccessError
		want []string
	}{
		{"unreachable", AccessError{Cause: CauseUnreachable, Server: srv, Err: errors.New("dial tcp: connection refused")},
			[]string{"incusd at " + srv + " is unreachable: dial tcp: connection refused", "incus config get core.https_address", "scripts/incus-up --https ADDR"}},
		{"pinned certificate differs", AccessError{Cause: CauseServerCert, Server: srv, Err: &PinMismatchError{Got: "aaaaaaaaaaaaaaaa", Want: "bbbbbbbbbbbbbbbb"}},
			[]string{"presented server certificate aaaaaaaaaaaa, not the pinned one bbbbbbbbbbbb", "/var/lib/incus/server.crt"}},
		{"no certificate presented", AccessError{Cause: CauseServerCert, Server: srv, Err: &PinMismatchError{Want: "bbbbbbbbbbbbbbbb"}},
			[]string{"presented server certificate (none)"}},
		{"certificate does not verify", AccessError{Cause: CauseServerCert, Server: srv, Err: x509.UnknownAuthorityError{}},
			[]string{"presented a server certificate that does not verify: x509: certificate signed by unknown authority"}},
		{"untrusted", AccessError{Cause: CauseUntrusted, Server: srv, Project: "p1", ClientFP: fp},
			[]string{"does not trust our client certificate 0123456789ab", "incus config trust add-certificate CERT --restricted --projects p1", "scripts/incus-up --https"}},
		{"another project", AccessError{Cause: CauseOtherProject, Server: srv, Project: "p1", ClientFP: fp,
			Err: &StatusError{Method: "GET", Path: "/projects/p1", Status: 403, Msg: `User does not have permission for project "p1"`}},
			[]string{"trusts our client certificate 0123456789ab, but not for project p1", `User does not have permission for project \"p1\"`, "incus config trust edit 0123456789ab"}},
		{"no such project", AccessError{Cause: CauseNoProject, Server: srv, Project: "p1"},
			[]string{"has no project p1", "scripts/incus-up"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.err.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Error() = %q\nlacks %q", got, w)
				}
			}
			if got != strings.ToLower(got[:1])+got[1:] {
				t.Errorf("message starts upper case: %q", got)
			}
		})
	}
}

// TestCheckAccessAnswers maps incusd's answers (a fake server: the edge
// cases the real one gives only with setups the tests cannot make, such as
// an unrestricted certificate and a missing project) to the causes.
func TestCheckAccessAnswers(t *testing.T) {
	server := newCert(t, "incus", false, nil, x509.ExtKeyUsageServerAuth)
	client := newCert(t, "jerichoci", false, nil, x509.ExtKeyUsageClientAuth)
	envelope := func(auth string) string {
		return fmt.Sprintf(`{"type":"sync","status":"Success","status_code":200,"metadata":{"auth":%q}}`, auth)
	}
	errEnvelope := func(code int, msg string) string {
		return fmt.Sprintf(`{"type":"error","error_code":%d,"error":%q}`, code, msg)
	}
	tests := []struct {
		name     string
		auth     string
		project  int    // HTTP status of GET /1.0/projects/p1
		body     string // its body
		want     AccessCause
		wantText string // for an error that is no AccessError
	}{
		{"trusted, project there", "trusted", 200, `{"type":"sync","status":"Success","status_code":200,"metadata":{"name":"p1"}}`, 0, ""},
		{"untrusted", "untrusted", 200, "", CauseUntrusted, ""},
		{"project forbidden", "trusted", 403, errEnvelope(403, `User does not have permission for project "p1"`), CauseOtherProject, ""},
		{"permission checker fails", "trusted", 500, errEnvelope(500, `Failed to get a permission checker: User does not have permissions for project "p1"`), CauseOtherProject, ""},
		{"project missing", "trusted", 404, errEnvelope(404, "Project not found"), CauseNoProject, ""},
		{"server error", "trusted", 500, errEnvelope(500, "database is locked"), 0, "get project p1: GET /1.0/projects/p1: 500 internal server error: database is locked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startTLSServer(t, server, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/1.0":
					fmt.Fprint(w, envelope(tc.auth))
				case "/1.0/projects/p1":
					w.WriteHeader(tc.project)
					fmt.Fprint(w, tc.body)
				default:
					t.Errorf("unexpected request %s", r.URL)
				}
			}))
			c, err := NewTLS(srv.URL, TLSConfig{ClientCert: client.certPEM, ClientKey: client.keyPEM, ServerCert: server.certPEM}, WithProject("p1"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.CheckAccess(context.Background())
			var ae *AccessError
			switch {
			case tc.want != 0:
				if !errors.As(err, &ae) || ae.Cause != tc.want || ae.ClientFP != CertFingerprint(client.cert.Raw) || ae.Project != "p1" {
					t.Fatalf("CheckAccess() = %#v (%v), want cause %d", ae, err, tc.want)
				}
			case tc.wantText != "":
				if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("CheckAccess() = %v, want a plain error with %q", err, tc.wantText)
				}
			case err != nil:
				t.Fatalf("CheckAccess() = %v, want nil", err)
			}
		})
	}
}

// TestCheckAccessNotHTTPS: an address where a plain HTTP server answers
// is no incusd over HTTPS: unreachable, saying so.
func TestCheckAccessNotHTTPS(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	client := newCert(t, "jerichoci", false, nil, x509.ExtKeyUsageClientAuth)
	c, err := NewTLS(strings.Replace(srv.URL, "http://", "https://", 1), TLSConfig{ClientCert: client.certPEM, ClientKey: client.keyPEM, ServerCert: client.certPEM})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ae *AccessError
	if err := c.CheckAccess(context.Background()); !errors.As(err, &ae) || ae.Cause != CauseUnreachable {
		t.Fatalf("CheckAccess() = %v, want unreachable", err)
	}
}

// startTLSServer serves h over TLS with cert, asking for a client
// certificate as incusd does, until the test ends.
func startTLSServer(t *testing.T, cert *testCert, h http.Handler) *httptest.Server {
	t.Helper()
	pair, err := tls.X509KeyPair(cert.certPEM, cert.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}
