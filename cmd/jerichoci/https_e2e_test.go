package main

// End-to-end tests of serve, run and image against the real incusd reached
// over HTTPS only, with client certificates it trusts restricted to the
// project (as scripts/incus-up --https sets up), trusts for another
// project, or does not trust (docs/INCUS.md, "A remote incusd over HTTPS").

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"jerichoci/internal/itest"
	"jerichoci/model"
)

// httpsEnv is the environment that points jerichoci at incusd over h with
// cert, and its unix socket at nothing, so that only HTTPS can work.
func httpsEnv(h *itest.IncusHTTPS, cert itest.ClientCert) map[string]string {
	return map[string]string{
		envIncusURL: h.URL, envIncusClientCert: cert.Cert, envIncusClientKey: cert.Key, envIncusServerCert: h.ServerCert,
		"INCUS_SOCKET": "/nonexistent/incus/unix.socket",
	}
}

func TestE2EHTTPS(t *testing.T) {
	cl := requireIncus(t)
	h := itest.StartIncusHTTPS(t)
	name := fmt.Sprintf("jci-test-https-e2e-%d", os.Getpid())
	ours := h.TrustedClientCert(t, name, e2eProject)
	other := h.TrustedClientCert(t, name+"-other", "default")
	untrusted := h.NewClientCert(t, name+"-untrusted")

	t.Run("run demo-pass over HTTPS only", func(t *testing.T) {
		r := runLane(t, cl, httpsEnv(h, ours), "demo-pass")
		if r.code != exitOK || r.rec.Status != model.StatusPassed {
			t.Fatalf("exit %d status %s\nstdout:\n%s\nstderr:\n%s", r.code, r.rec.Status, r.stdout, r.stderr)
		}
		if j := jobByID(t, r.rec, "hello"); *j.Message != "test passed" {
			t.Errorf("job = %+v", j)
		}
		// The record is the one of a run over the unix socket, byte for byte.
		checkGolden(t, "e2e-demo-pass.golden.json", normalise(r))
	})

	refusals := []struct {
		name string
		cert itest.ClientCert
		want []string
	}{
		{"not trusted", untrusted, []string{"does not trust our client certificate " + untrusted.Fingerprint[:12],
			"incus config trust add-certificate CERT --restricted --projects " + e2eProject}},
		{"trusted for another project", other, []string{"trusts our client certificate " + other.Fingerprint[:12] + ", but not for project " + e2eProject,
			"restricted to other projects"}},
	}
	for _, tc := range refusals {
		t.Run("serve refuses at start: "+tc.name, func(t *testing.T) {
			state := t.TempDir()
			_, stderr, code := runCLIEnv(t, httpsEnv(h, tc.cert), "serve", "--catalog", "../../jerichoci.lanes.json",
				"--state-root", state, "--http-listen", "", "--daemon-file", "")
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", code, exitUsage, stderr)
			}
			for _, w := range append([]string{"--incus-url " + h.URL + ": incusd at " + h.URL}, tc.want...) {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "workers on") {
				t.Errorf("serve started before refusing:\n%s", stderr)
			}
		})
		t.Run("run fails its job with the cause: "+tc.name, func(t *testing.T) {
			r := runLane(t, cl, httpsEnv(h, tc.cert), "demo-pass")
			msg := ""
			if j := jobByID(t, r.rec, "hello"); j.Message != nil {
				msg = *j.Message
			}
			if r.code != exitUsage || r.rec.Status != model.StatusFailed {
				t.Fatalf("exit %d status %s, want %d failed\nmessage %q", r.code, r.rec.Status, exitUsage, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("job message lacks %q:\n%s", w, msg)
				}
			}
		})
		t.Run("image refuses: "+tc.name, func(t *testing.T) {
			_, stderr, code := runImageCLI(t, "build-import", "--role", "managed-openclaw", "--alias", "jci-test/never",
				"--artifact", t.TempDir(), "--incus-url", h.URL, "--incus-client-cert", tc.cert.Cert,
				"--incus-client-key", tc.cert.Key, "--incus-server-cert", h.ServerCert)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", code, exitUsage, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}

	t.Run("image build-import over HTTPS", func(t *testing.T) {
		b := make([]byte, 5)
		rand.Read(b)
		alias := "jci-test/https-" + hex.EncodeToString(b)
		var fp string
		cleanupTestImage(t, cl, alias, &fp)
		stdout, stderr, code := runImageCLI(t, "build-import", "--role", "managed-openclaw", "--alias", alias,
			"--artifact", t.TempDir(), "--incus-url", h.URL, "--incus-client-cert", ours.Cert,
			"--incus-client-key", ours.Key, "--incus-server-cert", h.ServerCert)
		if code != exitOK {
			t.Fatalf("exit %d\nstderr:\n%s", code, stderr)
		}
		fp = imageFingerprintRE.FindStringSubmatch(stdout)[1]
		if a, err := cl.GetImageAlias(t.Context(), alias); err != nil || a.Target != fp {
			t.Fatalf("alias %s = %+v, %v; want target %s (stdout %q)", alias, a, err, fp, stdout)
		}
	})
}
