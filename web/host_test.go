package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHostCheck(t *testing.T) {
	names := []string{"ci.example.org", "CI-2.Example.NET.", "10.1.2.3", "[fd00::7]"}
	tests := []struct {
		listen string
		host   string
		want   bool
	}{
		// Loopback names, with or without port, whatever the listen address.
		{"127.0.0.1:4280", "localhost", true},
		{"127.0.0.1:4280", "localhost:4280", true},
		{"127.0.0.1:4280", "LOCALHOST.:4280", true},
		{"127.0.0.1:4280", "127.0.0.1", true},
		{"127.0.0.1:4280", "127.0.0.1:4280", true},
		{"127.0.0.1:4280", "127.0.0.2:80", true},
		{"127.0.0.1:4280", "[::1]", true},
		{"127.0.0.1:4280", "[::1]:4280", true},
		{"127.0.0.1:4280", "[::ffff:127.0.0.1]:4280", true},
		{"192.168.7.9:4280", "localhost:1", true},
		// The listen address's host.
		{"192.168.7.9:4280", "192.168.7.9:4280", true},
		{"192.168.7.9:4280", "192.168.7.9", true},
		{"[fd00::1]:4280", "[fd00::1]:4280", true},
		{"ci.internal:4280", "CI.internal:4280", true},
		{"192.168.7.9:4280", "192.168.7.10:4280", false},
		// A wildcard listen address answers to any IP, never to a name.
		{"0.0.0.0:4280", "192.168.7.10:4280", true},
		{"[::]:4280", "[fd00::9]:4280", true},
		{":4280", "10.9.9.9", true},
		{"0.0.0.0:4280", "attacker.example", false},
		{"0.0.0.0:4280", "attacker.example:4280", false},
		// The names given.
		{"127.0.0.1:4280", "ci.example.org", true},
		{"127.0.0.1:4280", "ci.example.org:443", true},
		{"127.0.0.1:4280", "ci-2.example.net", true},
		{"127.0.0.1:4280", "10.1.2.3:4280", true},
		{"127.0.0.1:4280", "[fd00::7]:8080", true},
		// Everything else.
		{"127.0.0.1:4280", "attacker.example", false},
		{"127.0.0.1:4280", "attacker.example:4280", false},
		{"127.0.0.1:4280", "localhost.attacker.example", false},
		{"127.0.0.1:4280", "127.0.0.1.nip.io", false},
		{"127.0.0.1:4280", "example.org", false},
		{"127.0.0.1:4280", "sub.ci.example.org", false},
		{"127.0.0.1:4280", "10.1.2.4", false},
		{"127.0.0.1:4280", "", false},
		{"127.0.0.1:4280", "::1", false},
		{"127.0.0.1:4280", "[]:80", false},
	}
	for _, tc := range tests {
		c, err := NewHostCheck(tc.listen, names)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Allowed(tc.host); got != tc.want {
			t.Errorf("listen %s, Host %q: allowed %t, want %t", tc.listen, tc.host, got, tc.want)
		}
	}
}

func TestHostCheckHandlerRefusesWith421(t *testing.T) {
	c, err := NewHostCheck("127.0.0.1:4280", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{StateRoot: t.TempDir()})
	h := c.Handler(s.Handler())
	for _, path := range []string{"/", "/api/runs", "/api/runs/x", "/runs/x/jobs/y/log/stream", "/static/app.js", "/metrics"} {
		for host, want := range map[string]int{"attacker.example": http.StatusMisdirectedRequest, "localhost:4280": 0} {
			req := httptest.NewRequest("GET", path, nil)
			req.Host = host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch {
			case want != 0 && rec.Code != want:
				t.Errorf("GET %s, Host %s: %d, want %d", path, host, rec.Code, want)
			case want == 0 && rec.Code == http.StatusMisdirectedRequest:
				t.Errorf("GET %s, Host %s: refused", path, host)
			case want != 0 && (strings.Contains(rec.Body.String(), host) || !strings.Contains(rec.Body.String(), "misdirected")):
				t.Errorf("GET %s, Host %s: body %q", path, host, rec.Body.String())
			}
		}
	}
}

func TestAllowedHostName(t *testing.T) {
	for in, want := range map[string]string{
		"ci.example.org":  "ci.example.org",
		"CI.Example.org.": "ci.example.org",
		"10.0.0.1":        "10.0.0.1",
		"[fd00::1]":       "fd00::1",
		"fd00::1":         "fd00::1",
		"build_host":      "build_host",
	} {
		if got, err := AllowedHostName(in); err != nil || got != want {
			t.Errorf("AllowedHostName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ci.example.org:4280", "http://ci.example.org", "a..b", "user@host", "ci example", "é.example", strings.Repeat("a", 64) + ".org"} {
		if got, err := AllowedHostName(bad); err == nil {
			t.Errorf("AllowedHostName(%q) = %q, want an error", bad, got)
		}
	}
}
