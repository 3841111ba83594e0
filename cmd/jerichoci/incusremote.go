package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor/incus"
)

// The environment twins of the remote incusd's flags, named like incus's
// own INCUS_SOCKET (docs/INCUS.md, "A remote incusd over HTTPS").
const (
	envIncusURL        = "INCUS_URL"
	envIncusClientCert = "INCUS_CLIENT_CERT"
	envIncusClientKey  = "INCUS_CLIENT_KEY"
	envIncusServerCert = "INCUS_SERVER_CERT"
)

// incusDefaultPort is incusd's HTTPS port when the address names none.
const incusDefaultPort = "8443"

// incusRemote is a remote incusd reached over HTTPS with a client
// certificate: its address and the PEM files. An empty URL means the local
// unix socket.
type incusRemote struct {
	URL        string
	ClientCert string
	ClientKey  string
	ServerCert string
}

func (r *incusRemote) fromEnv(env func(string) (string, bool)) {
	for key, dst := range map[string]*string{envIncusURL: &r.URL, envIncusClientCert: &r.ClientCert,
		envIncusClientKey: &r.ClientKey, envIncusServerCert: &r.ServerCert} {
		if v, ok := env(key); ok && strings.TrimSpace(v) != "" {
			*dst = strings.TrimSpace(v)
		}
	}
}

func (r *incusRemote) flags(fs *flag.FlagSet) {
	fs.StringVar(&r.URL, "incus-url", r.URL, "reach incusd over HTTPS at `https://HOST[:PORT]` (port 8443 when none) instead of its unix socket; needs --incus-client-cert, --incus-client-key and --incus-server-cert (env "+envIncusURL+"; scripts/incus-up --https prints them; docs/INCUS.md)")
	fs.StringVar(&r.ClientCert, "incus-client-cert", r.ClientCert, "`FILE`: PEM client certificate incusd trusts, restricted to the project (env "+envIncusClientCert+")")
	fs.StringVar(&r.ClientKey, "incus-client-key", r.ClientKey, "`FILE`: PEM key of --incus-client-cert (env "+envIncusClientKey+")")
	fs.StringVar(&r.ServerCert, "incus-server-cert", r.ServerCert, "`FILE`: incusd's own certificate (PEM, the Incus host's /var/lib/incus/server.crt), pinned: no other is accepted (env "+envIncusServerCert+")")
}

// remote reports whether an HTTPS incusd is configured.
func (r incusRemote) remote() bool { return r.URL != "" }

// baseURL is the address as NewTLS takes it: https://host:port.
func (r incusRemote) baseURL() (string, error) {
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("--incus-url %q (env %s): expected https://HOST[:PORT]", r.URL, envIncusURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), incusDefaultPort)
	}
	return "https://" + host, nil
}

// Validate reports every problem at once: an address without the files,
// files without an address, unreadable files.
func (r incusRemote) Validate() error {
	files := []struct{ flag, env, path string }{
		{"--incus-client-cert", envIncusClientCert, r.ClientCert},
		{"--incus-client-key", envIncusClientKey, r.ClientKey},
		{"--incus-server-cert", envIncusServerCert, r.ServerCert},
	}
	var errs []error
	if !r.remote() {
		for _, f := range files {
			if f.path != "" {
				errs = append(errs, fmt.Errorf("%s %q (env %s): needs --incus-url (env %s); without it incusd is reached over its unix socket", f.flag, f.path, f.env, envIncusURL))
			}
		}
		return errors.Join(errs...)
	}
	if _, err := r.baseURL(); err != nil {
		errs = append(errs, err)
	}
	for _, f := range files {
		if f.path == "" {
			errs = append(errs, fmt.Errorf("--incus-url %s: %s (env %s) is required: a PEM file (scripts/incus-up --https prints it)", r.URL, f.flag, f.env))
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s %q (env %s): %w", f.flag, f.path, f.env, err))
		}
	}
	return errors.Join(errs...)
}

// client opens the remote incusd in project.
func (r incusRemote) client(project string, log *zap.Logger) (*incus.Client, error) {
	base, err := r.baseURL()
	if err != nil {
		return nil, err
	}
	var cfg incus.TLSConfig
	for _, f := range []struct {
		flag, path string
		dst        *[]byte
	}{{"--incus-client-cert", r.ClientCert, &cfg.ClientCert}, {"--incus-client-key", r.ClientKey, &cfg.ClientKey}, {"--incus-server-cert", r.ServerCert, &cfg.ServerCert}} {
		if *f.dst, err = os.ReadFile(f.path); err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		}
	}
	cl, err := incus.NewTLS(base, cfg, incus.WithProject(project), incus.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("--incus-url %s: %w", base, err)
	}
	return cl, nil
}

// incusAccessTimeout bounds the start-up check of a remote incusd.
const incusAccessTimeout = 30 * time.Second

// checkIncusAccess is the start-up check of serve, run and image against a
// remote incusd: reachable, the pinned certificate, our client certificate
// trusted for the project. Nothing to check over the unix socket.
func (r incusRemote) checkIncusAccess(ctx context.Context, cl *incus.Client) error {
	if !r.remote() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, incusAccessTimeout)
	defer cancel()
	if err := cl.CheckAccess(ctx); err != nil {
		return fmt.Errorf("--incus-url %s: %w", r.URL, err)
	}
	return nil
}

// checkRemoteIncus is serve's preflight against a remote incusd: it
// connects, checks (checkIncusAccess) and disconnects, so that a daemon
// refused by incusd never starts pulling jobs it would only fail.
func (c execConfig) checkRemoteIncus(ctx context.Context, env func(string) (string, bool)) error {
	if !c.Remote.remote() {
		return nil
	}
	cl, err := c.incusClient(env, nil)
	if err != nil {
		return err
	}
	defer cl.Close()
	return c.Remote.checkIncusAccess(ctx, cl)
}

// imageIncus opens incusd for `image` in project: over HTTPS, checked
// first, when remote names one; else the unix socket.
func (c *cli) imageIncus(ctx context.Context, project string, remote incusRemote) (*incus.Client, error) {
	if err := remote.Validate(); err != nil {
		return nil, err
	}
	cl, err := execConfig{Project: project, Remote: remote}.incusClient(c.env, nil)
	if err != nil {
		return nil, err
	}
	if err := remote.checkIncusAccess(ctx, cl); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}
