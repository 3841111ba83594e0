package daemon_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"jerichoci/internal/itest"
)

// TestStatusPageChecksHost sends real HTTP requests to the real daemon's
// listener with forged Host headers, as a browser does after DNS
// rebinding: every route, the API, the live log stream and /metrics
// included, answers 421 to a name the daemon was not given; loopback
// names, the listen address and --http-allowed-host names get through.
func TestStatusPageChecksHost(t *testing.T) {
	require(t)
	url := startNATS(t)
	port := itest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startDaemon(t, url, "daemon-host-check", writeCatalog(t), 1, "--http-listen", addr, "--http-allowed-host", "ci.jerichoci.test")
	paths := []string{"/api/runs", "/", "/api/runs/none", "/runs/none/jobs/job/log/stream", "/metrics", "/healthz", "/readyz", "/static/app.js"}
	get := func(path, host string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b)
	}
	for _, host := range []string{"attacker.example", "attacker.example:" + fmt.Sprint(port), "localhost.attacker.example", "ci.jerichoci.test.attacker.example"} {
		for _, p := range paths {
			code, body := get(p, host)
			if code != http.StatusMisdirectedRequest || !strings.Contains(body, "misdirected") || strings.Contains(body, "attacker") {
				t.Errorf("GET %s with Host %s: %d %q; want 421 without an echo of the Host", p, host, code, body)
			}
		}
	}
	for _, host := range []string{addr, "localhost:" + fmt.Sprint(port), "localhost", "[::1]:" + fmt.Sprint(port), "ci.jerichoci.test", "CI.jerichoci.test:443"} {
		code, body := get("/api/runs", host)
		if code != http.StatusOK || !strings.Contains(body, `"runs"`) {
			t.Errorf("GET /api/runs with Host %s: %d %q; want 200 and the runs", host, code, body)
		}
		if code, _ := get("/metrics", host); code != http.StatusOK {
			t.Errorf("GET /metrics with Host %s: %d; want 200", host, code)
		}
	}
}
