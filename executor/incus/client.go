// Package incus is a small client for the Incus REST API: the calls
// jerichoci needs to run jobs in throwaway instances and to import its
// runner images. The upstream Go client is not available to us; this one
// uses only net/http, over the local unix socket or HTTPS with a client
// certificate. See docs/INCUS.md for the traps it handles.
//
// Every call takes a context, decodes the response envelope and returns a
// *StatusError for an error envelope. Methods that start an operation wait
// for it and return only when it is over.
package incus

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// SocketEnv names the environment variable that overrides the socket path.
const SocketEnv = "INCUS_SOCKET"

// StandardSockets are the socket paths tried, in order, when INCUS_SOCKET is
// unset: Debian's package and the upstream default.
var StandardSockets = []string{"/var/lib/incus/unix.socket", "/run/incus/unix.socket"}

// maxEnvelope caps the size of a JSON answer we are ready to decode.
const maxEnvelope = 64 << 20

// SocketPath returns $INCUS_SOCKET when it is set and not empty, else the
// first standard socket that exists.
func SocketPath(lookupEnv func(string) (string, bool)) (string, error) {
	if v, ok := lookupEnv(SocketEnv); ok && strings.TrimSpace(v) != "" {
		return v, nil
	}
	for _, p := range StandardSockets {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("incus: no socket: %s is unset and none of %s exists (is incusd running? see scripts/incus-up)",
		SocketEnv, strings.Join(StandardSockets, ", "))
}

// Client talks to one Incus server, in one project. It is safe for
// concurrent use. Close it to release its idle connections.
type Client struct {
	hc      *http.Client
	tr      *http.Transport
	base    string // scheme and host, no path
	project string
	log     *zap.Logger
	// clientFP is the SHA-256 fingerprint of the client certificate of a
	// TLS client ("" over the unix socket), for CheckAccess's messages.
	clientFP string

	// waitLimits counts long polls that ended at their limit
	// (WaitLimits); a pointer, so a copy of the Client counts into it too.
	waitLimits *atomic.Uint64
}

// Option configures a Client.
type Option func(*Client)

// WithProject makes every call address the given project ("" is the
// server's default project).
func WithProject(project string) Option { return func(c *Client) { c.project = project } }

// WithLogger sets the logger; the client logs each request at debug level.
func WithLogger(log *zap.Logger) Option {
	return func(c *Client) {
		if log != nil {
			c.log = log.Named("incus")
		}
	}
}

func newClient(tr *http.Transport, base string, opts []Option) *Client {
	c := &Client{
		hc:   &http.Client{Transport: tr},
		tr:   tr,
		base: base,
		log:  zap.NewNop(),

		waitLimits: new(atomic.Uint64),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// NewUnix returns a client for the server listening on a unix socket.
func NewUnix(socketPath string, opts ...Option) (*Client, error) {
	if socketPath == "" {
		return nil, errors.New("incus: empty socket path")
	}
	var d net.Dialer
	tr := unixTransport(func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", socketPath)
	})
	return newClient(tr, "http://incus.socket", opts), nil
}

// unixTransport is the transport of NewUnix: one connection per request,
// never kept open without a request on it.
//
// incusd 6.0 reads the first bytes of each new connection on its unix
// socket inside its accept loop (to tell STARTTLS from plain HTTP), so a
// connection that stays silent stops it from accepting any other one, and
// every client of incusd (the hooks liblxc runs to start and stop
// instances included) waits. Go's transport opens such connections when
// keep-alives are on: a dial that loses the race to a connection another
// request has just freed, or whose request was cancelled meanwhile, goes
// into the idle pool unused and stays there, silent, for IdleConnTimeout.
// That stalled all of incusd for 30 s at a time under load
// (docs/INCUS.md, "The traps it handles"). Without an idle pool a dialled
// connection either carries its request at once or is closed at once; a
// unix dial costs microseconds.
func unixTransport(dial func(ctx context.Context) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		// No idle pool: a connection carries one request, or one
		// websocket, and is closed after it. (DisableKeepAlives would do
		// the same for plain requests but breaks the exec websockets.)
		MaxIdleConnsPerHost: -1,
	}
}

// TLSConfig holds what NewTLS needs to reach a remote server: the client
// certificate and key (PEM), and either the server's own certificate to pin
// or the CA that signed it.
type TLSConfig struct {
	ClientCert []byte
	ClientKey  []byte
	// ServerCert pins the server certificate: only this exact certificate
	// is accepted, whatever its names and issuer.
	ServerCert []byte
	// CA verifies the server certificate chain and name instead.
	CA []byte
}

// NewTLS returns a client for https://host:port with a client certificate.
func NewTLS(baseURL string, cfg TLSConfig, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("incus: remote address %q: want https://host[:port]", baseURL)
	}
	cert, err := tls.X509KeyPair(cfg.ClientCert, cfg.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("incus: client certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	switch {
	case len(cfg.ServerCert) > 0 && len(cfg.CA) > 0:
		return nil, errors.New("incus: give either a pinned server certificate or a CA, not both")
	case len(cfg.ServerCert) > 0:
		block, _ := pem.Decode(cfg.ServerCert)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, errors.New("incus: server certificate: no PEM certificate found")
		}
		pinned := block.Bytes
		// Chain and name checks make no sense for a pinned self-signed
		// certificate; the exact bytes are checked instead.
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 || !bytes.Equal(rawCerts[0], pinned) {
				got := ""
				if len(rawCerts) > 0 {
					got = CertFingerprint(rawCerts[0])
				}
				return &PinMismatchError{Got: got, Want: CertFingerprint(pinned)}
			}
			return nil
		}
	case len(cfg.CA) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CA) {
			return nil, errors.New("incus: CA: no PEM certificate found")
		}
		tc.RootCAs = pool
	default:
		return nil, errors.New("incus: need a pinned server certificate or a CA")
	}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}
	c := newClient(tr, "https://"+u.Host, opts)
	c.clientFP = CertFingerprint(cert.Certificate[0])
	return c, nil
}

// Project returns the project the client addresses.
func (c *Client) Project() string { return c.project }

// Close releases the client's idle connections. Calls still running keep
// their connection until they end.
func (c *Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// response is the envelope of every answer but raw file contents.
type response struct {
	Type       string          `json:"type"`
	Status     string          `json:"status"`
	StatusCode int             `json:"status_code"`
	Operation  string          `json:"operation"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Metadata   json.RawMessage `json:"metadata"`
}

// request describes one call. path is below /1.0 and already escaped.
type request struct {
	method string
	path   string
	query  url.Values
	body   io.Reader
	json   any // encoded as the body when set
	header http.Header
}

// url builds the full URL; the client's project is added unless the query
// names one.
func (c *Client) url(path string, q url.Values) string {
	v := url.Values{}
	for k, vs := range q {
		v[k] = vs
	}
	if c.project != "" && v.Get("project") == "" {
		v.Set("project", c.project)
	}
	u := c.base + "/1.0" + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

// send sends the request and returns the raw answer; the caller closes the
// body.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	body := r.body
	if r.json != nil {
		b, err := json.Marshal(r.json)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", r.method, r.path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.url(r.path, r.query), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.json != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	c.log.Debug("request", zap.String("method", r.method), zap.String("path", r.path),
		zap.Int("status", resp.StatusCode), zap.Duration("took", time.Since(start)))
	return resp, nil
}

// do sends the request and decodes the envelope. An error envelope, whatever
// the HTTP status, becomes a *StatusError; so does an HTTP error status
// without an envelope.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return decodeEnvelope(r.method, r.path, resp)
}

func decodeEnvelope(method, path string, resp *http.Response) (*response, error) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxEnvelope+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if len(raw) > maxEnvelope {
		return nil, fmt.Errorf("%s %s: response larger than %d bytes", method, path, maxEnvelope)
	}
	var env response
	if err := json.Unmarshal(raw, &env); err != nil || env.Type == "" {
		if resp.StatusCode >= 400 {
			return nil, &StatusError{Method: method, Path: path, Status: resp.StatusCode, Msg: bodySnippet(raw, resp.Status)}
		}
		if err == nil {
			err = errors.New("no envelope type")
		}
		return nil, fmt.Errorf("%s %s: undecodable response (HTTP %d, %q): %w", method, path, resp.StatusCode, bodySnippet(raw, ""), err)
	}
	switch env.Type {
	case "error":
		code := env.ErrorCode
		if code == 0 {
			code = resp.StatusCode
		}
		return nil, &StatusError{Method: method, Path: path, Status: code, Msg: env.Error}
	case "sync", "async":
		if resp.StatusCode >= 400 {
			return nil, &StatusError{Method: method, Path: path, Status: resp.StatusCode, Msg: env.Status}
		}
		return &env, nil
	default:
		return nil, fmt.Errorf("%s %s: unknown response type %q", method, path, env.Type)
	}
}

// bodySnippet returns the start of a body for an error message.
func bodySnippet(raw []byte, fallback string) string {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return fallback
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// get decodes the metadata of a sync answer to a GET into out.
func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	env, err := c.do(ctx, request{method: http.MethodGet, path: path, query: q})
	if err != nil {
		return err
	}
	return decodeMetadata(http.MethodGet, path, env, out)
}

func decodeMetadata(method, path string, env *response, out any) error {
	if out == nil {
		return nil
	}
	if len(env.Metadata) == 0 || string(env.Metadata) == "null" {
		return fmt.Errorf("%s %s: response has no metadata", method, path)
	}
	if err := json.Unmarshal(env.Metadata, out); err != nil {
		return fmt.Errorf("%s %s: decode metadata: %w", method, path, err)
	}
	return nil
}

// doSync sends a request that must answer synchronously.
func (c *Client) doSync(ctx context.Context, r request) error {
	env, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if env.Type != "sync" {
		return fmt.Errorf("%s %s: want a sync response, got %q", r.method, r.path, env.Type)
	}
	return nil
}
