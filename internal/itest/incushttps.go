package itest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests that reach the local incusd over HTTPS share its one
// core.https_address, a server-wide setting (docs/INCUS.md, "A remote
// incusd over HTTPS"). When it is unset, the first of them sets it to a
// free loopback port and notes that in httpsState; every user holds a
// shared flock on httpsLock while it uses the address, and whoever is
// last (it gets the lock exclusively) unsets it again, if it is still the
// value noted. An address someone else set (scripts/incus-up --https) is
// used as it is and never changed.
const (
	httpsLock  = "/tmp/jerichoci-incus-https.lock"
	httpsState = "/tmp/jerichoci-incus-https.state"
)

// IncusHTTPS is the local incusd as a test reaches it over HTTPS.
type IncusHTTPS struct {
	// URL is https://127.0.0.1:PORT.
	URL string
	// ServerCert is a PEM file of incusd's own certificate, to pin.
	ServerCert string
	dir        string
}

// StartIncusHTTPS makes the local incusd listen on HTTPS for the test's
// duration (see httpsLock) and returns where. It needs the incus CLI and
// root, as incus-up's incusd does.
func StartIncusHTTPS(t testing.TB) *IncusHTTPS {
	t.Helper()
	f, err := os.OpenFile(httpsLock, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	addr := strings.TrimSpace(incusCLI(t, "config", "get", "core.https_address"))
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		incusCLI(t, "config", "set", "core.https_address", addr)
		if err := os.WriteFile(httpsState, []byte(addr+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("core.https_address was unset: set to %s until the last HTTPS test ends", addr)
	}
	// From exclusive to shared: others may use it too, nobody unsets it.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseHTTPS(t, f) })

	h := &IncusHTTPS{URL: "https://" + loopback(t, addr), dir: t.TempDir()}
	var info struct {
		Environment struct {
			Certificate string `json:"certificate"`
		} `json:"environment"`
	}
	if err := json.Unmarshal([]byte(incusCLI(t, "query", "/1.0")), &info); err != nil || info.Environment.Certificate == "" {
		t.Fatalf("incusd's certificate from GET /1.0: %v", err)
	}
	h.ServerCert = filepath.Join(h.dir, "server.crt")
	if err := os.WriteFile(h.ServerCert, []byte(info.Environment.Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(h.URL, "https://")
	WaitFor(t, "incusd listening on "+host, 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return h
}

// releaseHTTPS ends this test's use of the address; the last user unsets
// the address it set.
func releaseHTTPS(t testing.TB, f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
	g, err := os.OpenFile(httpsLock, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer g.Close()
	if syscall.Flock(int(g.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return // another test still uses it: the last one unsets it
	}
	defer syscall.Flock(int(g.Fd()), syscall.LOCK_UN) //nolint:errcheck // closed next
	ours, err := os.ReadFile(httpsState)
	if err != nil {
		return
	}
	if strings.TrimSpace(incusCLI(t, "config", "get", "core.https_address")) == strings.TrimSpace(string(ours)) {
		incusCLI(t, "config", "unset", "core.https_address")
	}
	_ = os.Remove(httpsState)
}

// loopback turns a listen address into one to dial: a wildcard host
// (":8443", "0.0.0.0", "[::]") becomes 127.0.0.1, no port 8443.
func loopback(t testing.TB, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "8443"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// ClientCert is a client certificate and key made for a test, as files.
type ClientCert struct {
	Cert, Key   string // PEM files
	Fingerprint string // SHA-256 of the certificate, as incusd names it
}

// NewClientCert makes a self-signed client certificate and key (ECDSA
// P-256) in the test's temporary directory. It is trusted by nobody.
func (h *IncusHTTPS) NewClientCert(t testing.TB, name string) ClientCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(h.dir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	c := ClientCert{Cert: filepath.Join(dir, "client.crt"), Key: filepath.Join(dir, "client.key")}
	sum := sha256.Sum256(der)
	c.Fingerprint = hex.EncodeToString(sum[:])
	if err := os.WriteFile(c.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// TrustedClientCert makes a client certificate that incusd trusts,
// restricted to projects, under a trust entry named name (the test's own
// name, so that it is recognisable); the entry is removed when the test ends.
func (h *IncusHTTPS) TrustedClientCert(t testing.TB, name string, projects ...string) ClientCert {
	t.Helper()
	c := h.NewClientCert(t, name)
	incusCLI(t, "config", "trust", "add-certificate", c.Cert, "--name", name, "--restricted", "--projects", strings.Join(projects, ","))
	t.Cleanup(func() { incusCLI(t, "config", "trust", "remove", c.Fingerprint) })
	return c
}

// incusCLI runs the incus CLI (over the unix socket) and returns its
// standard output; a failure fails the test.
func incusCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("incus", args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		t.Fatalf("incus %s: %s", strings.Join(args, " "), msg)
	}
	return string(out)
}
