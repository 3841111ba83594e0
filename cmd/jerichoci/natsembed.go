package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// defaultNATSListen is where the embedded server listens and where the
// client commands look when no URL is given.
const defaultNATSListen = "127.0.0.1:4222"

// natsConfig says how to reach NATS: defaults, then JERICHOCI_NATS_*, then
// flags. With no URL, serve starts an embedded server on Listen and the
// client commands connect there.
type natsConfig struct {
	URL      string
	User     string
	Password string
	Creds    string // credentials (JWT + seed) file
	NKey     string // nkey seed file
	TLSCert  string
	TLSKey   string
	TLSCA    string
	Listen   string // embedded server address (serve only)
}

func defaultNATSConfig() natsConfig { return natsConfig{Listen: defaultNATSListen} }

func (c *natsConfig) fromEnv(env func(string) (string, bool)) {
	for key, dst := range map[string]*string{
		"JERICHOCI_NATS_URL": &c.URL, "JERICHOCI_NATS_USER": &c.User, "JERICHOCI_NATS_PASSWORD": &c.Password,
		"JERICHOCI_NATS_CREDS": &c.Creds, "JERICHOCI_NATS_NKEY": &c.NKey, "JERICHOCI_NATS_TLS_CERT": &c.TLSCert,
		"JERICHOCI_NATS_TLS_KEY": &c.TLSKey, "JERICHOCI_NATS_TLS_CA": &c.TLSCA, "JERICHOCI_NATS_LISTEN": &c.Listen,
	} {
		if v, ok := env(key); ok && v != "" {
			*dst = v
		}
	}
}

// flags registers the connection flags; embedded adds --nats-listen.
func (c *natsConfig) flags(fs *flag.FlagSet, embedded bool) {
	urlHelp := "NATS server `URL`s, comma-separated (env JERICHOCI_NATS_URL; default nats://" + defaultNATSListen + ")"
	if embedded {
		urlHelp = "NATS server `URL`s, comma-separated (env JERICHOCI_NATS_URL); empty starts an embedded server with JetStream under the state root"
		fs.StringVar(&c.Listen, "nats-listen", c.Listen, "`HOST:PORT` of the embedded server (env JERICHOCI_NATS_LISTEN)")
	}
	fs.StringVar(&c.URL, "nats-url", c.URL, urlHelp)
	fs.StringVar(&c.User, "nats-user", c.User, "NATS `USER` (env JERICHOCI_NATS_USER; the password comes from JERICHOCI_NATS_PASSWORD)")
	fs.StringVar(&c.Creds, "nats-creds", c.Creds, "NATS credentials `FILE` (env JERICHOCI_NATS_CREDS)")
	fs.StringVar(&c.NKey, "nats-nkey", c.NKey, "NATS nkey seed `FILE` (env JERICHOCI_NATS_NKEY)")
	fs.StringVar(&c.TLSCert, "nats-tls-cert", c.TLSCert, "client certificate `FILE` for TLS (env JERICHOCI_NATS_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "nats-tls-key", c.TLSKey, "client key `FILE` for TLS (env JERICHOCI_NATS_TLS_KEY)")
	fs.StringVar(&c.TLSCA, "nats-tls-ca", c.TLSCA, "CA `FILE` to verify the server (env JERICHOCI_NATS_TLS_CA)")
}

// Validate reports every problem at once.
func (c natsConfig) Validate(embedded bool) error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("nats: --nats-tls-cert and --nats-tls-key go together"))
	}
	if c.Creds != "" && c.NKey != "" {
		errs = append(errs, errors.New("nats: --nats-creds and --nats-nkey exclude each other"))
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, errors.New("nats: JERICHOCI_NATS_PASSWORD needs a user (--nats-user)"))
	}
	for name, f := range map[string]string{"--nats-creds": c.Creds, "--nats-nkey": c.NKey,
		"--nats-tls-cert": c.TLSCert, "--nats-tls-key": c.TLSKey, "--nats-tls-ca": c.TLSCA} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("nats: %s: %w", name, err))
		}
	}
	if embedded && c.URL == "" {
		if _, _, err := splitListen(c.Listen); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// clientURL is the URL the client commands use.
func (c natsConfig) clientURL() string {
	if c.URL != "" {
		return c.URL
	}
	return "nats://" + c.Listen
}

// connect dials url with the configured authentication and TLS. closed is
// closed once the connection is closed for good (after Drain).
func (c natsConfig) connect(url, name string, log *zap.Logger) (nc *nats.Conn, closed <-chan struct{}, err error) {
	done := make(chan struct{})
	opts := []nats.Option{
		nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.ClosedHandler(func(*nats.Conn) { close(done) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", zap.String("url", nc.ConnectedUrlRedacted())) }),
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, nil, fmt.Errorf("nats: --nats-nkey %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	nc, err = nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, done, nil
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("nats: --nats-listen %q: expected HOST:PORT: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("nats: --nats-listen %q: port %q is not a port number", listen, p)
	}
	return host, port, nil
}

// startEmbedded runs a nats-server with JetStream stored in storeDir,
// listening on listen (loopback by default) so other tools can connect.
func startEmbedded(listen, storeDir string, log *zap.Logger) (*server.Server, error) {
	host, port, err := splitListen(listen)
	if err != nil {
		return nil, err
	}
	// Fail clearly when the port is taken (another daemon already embeds a
	// server there): the server itself only logs it.
	if l, err := net.Listen("tcp", listen); err != nil {
		return nil, fmt.Errorf("embedded nats-server: cannot listen on %s (is another jerichoci serve running? use --nats-url to join it): %w", listen, err)
	} else {
		l.Close()
	}
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "jerichoci-embedded", Host: host, Port: port, JetStream: true, StoreDir: storeDir,
		NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	s.SetLoggerV2(&natsLogger{log.Sugar()}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats-server: not ready on %s after 30s", listen)
	}
	return s, nil
}

// natsLogger sends the embedded server's log to zap.
type natsLogger struct{ s *zap.SugaredLogger }

func (l *natsLogger) Noticef(format string, v ...any) { l.s.Debugf(format, v...) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.s.Warnf(format, v...) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.s.Debugf(format, v...) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.s.Debugf(format, v...) }
