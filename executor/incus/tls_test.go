package incus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type testCert struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// newCert makes a certificate signed by parent (self-signed when nil).
func newCert(t *testing.T, cn string, isCA bool, parent *testCert, usage x509.ExtKeyUsage) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{
		cert: cert, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
}

func TestTLS(t *testing.T) {
	ca := newCert(t, "ca", true, nil, x509.ExtKeyUsageServerAuth)
	server := newCert(t, "incus", false, ca, x509.ExtKeyUsageServerAuth)
	other := newCert(t, "other", false, nil, x509.ExtKeyUsageServerAuth)
	client := newCert(t, "jerichoci", false, nil, x509.ExtKeyUsageClientAuth)

	body := fixture(t, "server.json")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) != 1 || r.TLS.PeerCertificates[0].Subject.CommonName != "jerichoci" {
			w.WriteHeader(403)
			w.Write([]byte(`{"type":"error","error_code":403,"error":"not authorized"}`))
			return
		}
		w.Write(body)
	}))
	pair, err := tls.X509KeyPair(server.certPEM, server.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failing cases log handshake errors
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()

	tests := []struct {
		name       string
		cfg        TLSConfig
		wantNewErr string
		wantErr    string
	}{
		{name: "pinned server certificate", cfg: TLSConfig{ServerCert: server.certPEM}},
		{name: "CA", cfg: TLSConfig{CA: ca.certPEM}},
		{name: "wrong pinned certificate", cfg: TLSConfig{ServerCert: other.certPEM}, wantErr: "does not match the pinned one"},
		{name: "wrong CA", cfg: TLSConfig{CA: other.certPEM}, wantErr: "certificate"},
		{name: "neither", cfg: TLSConfig{}, wantNewErr: "need a pinned server certificate or a CA"},
		{name: "both", cfg: TLSConfig{ServerCert: server.certPEM, CA: ca.certPEM}, wantNewErr: "not both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.ClientCert, tc.cfg.ClientKey = client.certPEM, client.keyPEM
			c, err := NewTLS(srv.URL, tc.cfg)
			if tc.wantNewErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantNewErr) {
					t.Fatalf("NewTLS() error = %v, want %q", err, tc.wantNewErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.Server(t.Context())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Server() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || s.Environment.ServerVersion != "6.0.4" {
				t.Fatalf("Server() = %+v, %v", s, err)
			}
		})
	}
	if _, err := NewTLS("http://x", TLSConfig{}); err == nil {
		t.Fatal("NewTLS(http://…) succeeded, want an error")
	}
}
