package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"jerichoci/internal/atomicfile"
	"jerichoci/run/protocol"
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
	// InsecureListen allows the embedded server on a non-loopback address
	// without TLS (serve only).
	InsecureListen bool
	// ServerTLSCert and ServerTLSKey make the embedded server speak TLS.
	ServerTLSCert string
	ServerTLSKey  string
	// StateRoot is where the client commands look for the embedded
	// server's credentials (STATE/nats/client.json).
	StateRoot string
	// role is the user a client command is, without explicit credentials,
	// on the embedded server of the state root: client (the zero value)
	// or reader.
	role protocol.Role
	// lookups: where a client command looks for credentials without a
	// state root given, and where it looked (finddaemon.go).
	lookups clientLookups
}

func defaultNATSConfig() natsConfig {
	return natsConfig{Listen: defaultNATSListen, StateRoot: defaultExecConfig().StateRoot}
}

func (c *natsConfig) fromEnv(env func(string) (string, bool)) {
	for key, dst := range map[string]*string{
		"JERICHOCI_NATS_URL": &c.URL, "JERICHOCI_NATS_USER": &c.User, "JERICHOCI_NATS_PASSWORD": &c.Password,
		"JERICHOCI_NATS_CREDS": &c.Creds, "JERICHOCI_NATS_NKEY": &c.NKey, "JERICHOCI_NATS_TLS_CERT": &c.TLSCert,
		"JERICHOCI_NATS_TLS_KEY": &c.TLSKey, "JERICHOCI_NATS_TLS_CA": &c.TLSCA, "JERICHOCI_NATS_LISTEN": &c.Listen,
		"JERICHOCI_NATS_SERVER_TLS_CERT": &c.ServerTLSCert, "JERICHOCI_NATS_SERVER_TLS_KEY": &c.ServerTLSKey,
		envStateRoot: &c.StateRoot,
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
		fs.StringVar(&c.Listen, "nats-listen", c.Listen, "`HOST:PORT` of the embedded server (env JERICHOCI_NATS_LISTEN); a non-loopback address needs TLS or --nats-insecure-listen")
		fs.BoolVar(&c.InsecureListen, "nats-insecure-listen", c.InsecureListen, "allow the embedded server on a non-loopback address without TLS (anyone who can reach it still needs the credentials)")
		fs.StringVar(&c.ServerTLSCert, "nats-server-tls-cert", c.ServerTLSCert, "certificate `FILE` of the embedded server (env JERICHOCI_NATS_SERVER_TLS_CERT)")
		fs.StringVar(&c.ServerTLSKey, "nats-server-tls-key", c.ServerTLSKey, "key `FILE` of the embedded server (env JERICHOCI_NATS_SERVER_TLS_KEY)")
	} else {
		fs.StringVar(&c.StateRoot, "state-root", c.StateRoot, "state `DIR` of a daemon on this host whose embedded server's credentials (DIR/nats/client.json) are used when no URL or the same URL is given (env PIKACI_STATE_ROOT; default: the state root a running serve published in its daemon file, else ./.pikaci)")
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
	if (c.ServerTLSCert == "") != (c.ServerTLSKey == "") {
		errs = append(errs, errors.New("nats: --nats-server-tls-cert and --nats-server-tls-key go together"))
	}
	if embedded && c.URL == "" {
		if host, _, err := splitListen(c.Listen); err != nil {
			errs = append(errs, err)
		} else if !loopbackHost(host) && c.ServerTLSCert == "" && !c.InsecureListen {
			errs = append(errs, fmt.Errorf("nats: --nats-listen %q is not a loopback address: the embedded server would be reachable from other hosts and from guests on the Incus bridge without TLS; give it --nats-server-tls-cert/--nats-server-tls-key, or allow it with --nats-insecure-listen", c.Listen))
		}
	}
	return errors.Join(errs...)
}

// loopbackHost reports whether host names only this machine: a loopback
// IP or "localhost". "" and 0.0.0.0 mean every interface.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// explicitAuth reports whether the user named a way to authenticate.
func (c natsConfig) explicitAuth() bool { return c.User != "" || c.Creds != "" || c.NKey != "" }

// useStateCredentials lets a client command on the daemon's host connect
// to its embedded server with no flags: with no URL (or the server's own
// URL) and no explicit authentication, the credentials that serve wrote
// under the state root are used. Another server never sees them.
func (c *natsConfig) useStateCredentials() error {
	if c.explicitAuth() {
		return nil
	}
	role := c.role
	if role == "" {
		role = protocol.RoleClient
	}
	cr, found, err := c.findStateCredentials(role)
	if err != nil || !found {
		return err
	}
	if c.URL != "" && c.URL != cr.URL {
		return nil
	}
	c.URL, c.User, c.Password = cr.URL, cr.User, cr.Password
	return nil
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
func (c natsConfig) connect(url, name string, log *zap.Logger, extra ...nats.Option) (nc *nats.Conn, closed <-chan struct{}, err error) {
	done := make(chan struct{})
	opts := []nats.Option{
		nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		// A server gone without closing the connection (its host cut off)
		// is noticed within about 8 s, and another of the URLs taken; the
		// default pings take minutes. Daemons and client commands alike.
		// A daemon holding a job on that connection is back, and its claim
		// refreshed, before another may take the job over: the ack wait
		// (10 s) and a watched silence of the stale window (6 s) must pass
		// first (docs/RELIABILITY.md, "Claims across an outage").
		nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(3),
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
	nc, err = nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, nil, c.connectError(url, err)
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

// credentialsFile, under STATE/nats, holds the embedded server's client
// URL and the client user's credentials (0600); readerFile the reader's
// and workerFile the worker's, for daemons joining this server.
const (
	credentialsFile = "client.json"
	readerFile      = "reader.json"
	workerFile      = "worker.json"
)

// roleFile is the file under STATE/nats of role's credentials.
func roleFile(role protocol.Role) string {
	switch role {
	case protocol.RoleReader:
		return readerFile
	case protocol.RoleWorker:
		return workerFile
	}
	return credentialsFile
}

// credentials is the content of credentialsFile.
type credentials struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
}

func credentialsPath(stateRoot string) string {
	return filepath.Join(stateRoot, "nats", credentialsFile)
}

func roleCredentialsPath(stateRoot string, role protocol.Role) string {
	return filepath.Join(stateRoot, "nats", roleFile(role))
}

func readRoleCredentials(stateRoot string, role protocol.Role) (credentials, error) {
	var cr credentials
	p := roleCredentialsPath(stateRoot, role)
	b, err := os.ReadFile(p)
	if err != nil {
		return cr, err
	}
	if err := json.Unmarshal(b, &cr); err != nil || cr.User == "" || cr.Password == "" {
		return cr, fmt.Errorf("nats credentials %s: expected {\"url\",\"user\",\"password\"}", p)
	}
	return cr, nil
}

// randomSecret is 32 random bytes, base64url.
func randomSecret() (string, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("nats credentials: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(secret), nil
}

// embeddedUsers are the embedded server's users: the fleet's roles
// (docs/PROTOCOL.md), each with its own password, and an admin whose
// password is new at every start and never written anywhere.
type embeddedUsers struct {
	Roles map[protocol.Role]credentials
	Admin credentials
}

// embeddedCredentials returns the embedded server's users: the roles'
// credentials written by an earlier start, or new ones (a random
// password), each stored 0600 in a 0700 directory with url as the
// address clients use (a file of another user, as an older version wrote
// client.json, is replaced); and a new admin.
func embeddedCredentials(stateRoot, url string) (embeddedUsers, error) {
	users := embeddedUsers{Roles: map[protocol.Role]credentials{}}
	dir := filepath.Dir(credentialsPath(stateRoot))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return users, fmt.Errorf("nats credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return users, fmt.Errorf("nats credentials: %w", err)
	}
	for _, role := range protocol.Roles() {
		cr, err := readRoleCredentials(stateRoot, role)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return users, err
		}
		if err != nil || cr.User != string(role) {
			pw, err := randomSecret()
			if err != nil {
				return users, err
			}
			cr = credentials{User: string(role), Password: pw}
		}
		cr.URL = url
		if err := writeCredentials(roleCredentialsPath(stateRoot, role), cr); err != nil {
			return users, err
		}
		users.Roles[role] = cr
	}
	pw, err := randomSecret()
	if err != nil {
		return users, err
	}
	users.Admin = credentials{User: "admin", Password: pw}
	return users, nil
}

// writeCredentials stores cr in p, 0600, atomically.
func writeCredentials(p string, cr credentials) error {
	b, err := json.MarshalIndent(cr, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("nats credentials: %w", err)
	}
	return nil
}

// embeddedOptions say how serve runs its embedded server.
type embeddedOptions struct {
	Listen   string
	StoreDir string
	Users    embeddedUsers
	TLSCert  string
	TLSKey   string
}

// startEmbedded runs a nats-server with JetStream stored in StoreDir,
// listening on Listen (loopback by default) so other tools can connect.
// Every client must authenticate as one of Users; JetStream is in the
// fleet's account, clients and readers in their own (docs/PROTOCOL.md).
func startEmbedded(o embeddedOptions, log *zap.Logger) (*server.Server, error) {
	listen, storeDir := o.Listen, o.StoreDir
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
	if moved, err := adoptGlobalAccount(storeDir); err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	} else if moved {
		log.Info("moved the streams of an older jerichoci from the global account into the fleet's", zap.String("account", protocol.AccountFleet))
	}
	// The accounts and users of docs/PROTOCOL.md, from the same text.
	opts := &server.Options{}
	conf, err := embeddedConfig(o.Users)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	if err := opts.ProcessConfigString(conf); err != nil {
		return nil, fmt.Errorf("embedded nats-server: configuration: %w", err)
	}
	opts.ServerName, opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs = "jerichoci-embedded", host, port, true, storeDir, true
	if o.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server: tls: %w", err)
		}
		opts.TLSConfig, opts.TLS = tc, true
	}
	s, err := server.NewServer(opts)
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

// adoptGlobalAccount moves the JetStream data of a store written before
// the fleet had an account of its own (jetstream/$G: queued jobs,
// results, claims, sources) to the fleet's account (jetstream/JERICHOCI),
// so an upgrade loses nothing. It does nothing when the fleet's account
// already has data (both kept; the global one is no longer served) or
// there is nothing to move; moved says whether it moved it. Run it only
// while no server uses storeDir.
func adoptGlobalAccount(storeDir string) (moved bool, err error) {
	old := filepath.Join(storeDir, "jetstream", server.DEFAULT_GLOBAL_ACCOUNT)
	dst := filepath.Join(storeDir, "jetstream", protocol.AccountFleet)
	if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("older JetStream data %s: %w", old, err)
	}
	if _, err := os.Stat(dst); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("JetStream data of account %s: %w", protocol.AccountFleet, err)
	}
	if err := os.Rename(old, dst); err != nil {
		return false, fmt.Errorf("move older JetStream data %s to account %s: %w", old, protocol.AccountFleet, err)
	}
	return true, nil
}

// natsLogger sends the embedded server's log to zap.
type natsLogger struct{ s *zap.SugaredLogger }

func (l *natsLogger) Noticef(format string, v ...any) { l.s.Debugf(format, v...) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.s.Warnf(format, v...) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.s.Debugf(format, v...) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.s.Debugf(format, v...) }
