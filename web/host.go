package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// HostCheck refuses requests whose Host header names another server than
// this one, so that a web page on another origin cannot read the status
// page, the API or /metrics through DNS rebinding (docs/SECURITY.md, "The
// status page"). It allows, with any port or none:
//
//   - localhost and the loopback addresses (127.0.0.0/8, ::1);
//   - the host of the listen address (a name or an IP); when that is a
//     wildcard (0.0.0.0, ::, or empty), any IP address, which is what
//     Prometheus scrapes by (a rebinding attack needs a name, never an IP);
//   - the names given (serve --http-allowed-host).
//
// Others, an empty Host included, get 421 Misdirected Request.
type HostCheck struct {
	names map[string]bool // normal forms (AllowedHostName)
	anyIP bool            // listening on every address
}

// NewHostCheck returns the check for a server listening on listen
// (HOST:PORT) and answering to names as well. A name is a host name or IP
// address without port or scheme.
func NewHostCheck(listen string, names []string) (*HostCheck, error) {
	c := &HostCheck{names: map[string]bool{"localhost": true}}
	for _, n := range names {
		h, err := AllowedHostName(n)
		if err != nil {
			return nil, err
		}
		c.add(h)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: expected HOST:PORT: %w", listen, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() || host == "" {
		c.anyIP = true
	} else {
		c.add(normalHost(host))
	}
	return c, nil
}

func (c *HostCheck) add(h string) {
	if ip, err := netip.ParseAddr(h); err == nil {
		h = ip.Unmap().String()
	}
	c.names[h] = true
}

// AllowedHostName checks a name given to --http-allowed-host and returns
// its normal form (lowercase, no trailing dot, an IPv6 address without
// brackets).
func AllowedHostName(name string) (string, error) {
	h := normalHost(name)
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().String(), nil
	}
	if h == "" || len(h) > 253 || strings.ContainsAny(h, ":/@ \t") {
		return "", fmt.Errorf("allowed host %q: expected a host name or IP address, without port or scheme", name)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("allowed host %q: expected a host name or IP address, without port or scheme", name)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("allowed host %q: expected a host name or IP address, without port or scheme", name)
			}
		}
	}
	return h, nil
}

// normalHost is h lowercase, without brackets and a trailing dot.
func normalHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return h
}

// Allowed reports whether a request's Host header (with or without port)
// names this server.
func (c *HostCheck) Allowed(hostHeader string) bool {
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	} else if strings.Contains(hostHeader, ":") && !strings.HasPrefix(hostHeader, "[") {
		// A bare IPv6 address is not a valid Host; a name with a bad port
		// is not either.
		return false
	}
	host = normalHost(host)
	if host == "" {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		return ip.IsLoopback() || c.anyIP || c.names[ip.String()]
	}
	return c.names[host]
}

// misdirected is the body of a refused request: no echo of the Host.
const misdirected = "421 misdirected request: this server does not answer to that Host (serve --http-allowed-host NAME adds one)\n"

// Handler returns next behind the check.
func (c *HostCheck) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.Allowed(r.Host) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusMisdirectedRequest)
			_, _ = w.Write([]byte(misdirected))
			return
		}
		next.ServeHTTP(w, r)
	})
}
