package incus

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// CertFingerprint is the SHA-256 fingerprint of a DER certificate, in hex:
// how incusd names certificates (`incus config trust list`).
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PinMismatchError is a server that presented another certificate than
// the pinned one (TLSConfig.ServerCert).
type PinMismatchError struct {
	Got, Want string // fingerprints; Got is "" when none was presented
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("incus: server certificate %s does not match the pinned one %s", short(e.Got), short(e.Want))
}

// short shortens a fingerprint to the 12 digits incus shows.
func short(fp string) string {
	if fp == "" {
		return "(none)"
	}
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}

// AccessCause is why CheckAccess refused a server.
type AccessCause int

const (
	// CauseUnreachable: no HTTPS server answers at the address.
	CauseUnreachable AccessCause = iota + 1
	// CauseServerCert: the server's certificate is not the pinned one, or
	// does not verify against the CA.
	CauseServerCert
	// CauseUntrusted: incusd does not trust our client certificate.
	CauseUntrusted
	// CauseOtherProject: incusd trusts our certificate, restricted to
	// projects that do not include ours.
	CauseOtherProject
	// CauseNoProject: incusd has no project of that name.
	CauseNoProject
)

// AccessError is a remote incusd that cannot be used, with the cause and
// what to do about it (docs/INCUS.md, "A remote incusd over HTTPS").
type AccessError struct {
	Cause   AccessCause
	Server  string // https://host:port
	Project string
	// ClientFP is our client certificate's fingerprint.
	ClientFP string
	Err      error // what the transport or incusd said
}

func (e *AccessError) Unwrap() error { return e.Err }

func (e *AccessError) Error() string {
	var pin *PinMismatchError
	switch e.Cause {
	case CauseUnreachable:
		return fmt.Sprintf("incusd at %s is unreachable: %v; check the address and that incusd listens there "+
			"(on the Incus host: incus config get core.https_address; scripts/incus-up --https ADDR sets it) with no firewall in the way",
			e.Server, cause(e.Err))
	case CauseServerCert:
		if errors.As(e.Err, &pin) {
			return fmt.Sprintf("incusd at %s presented server certificate %s, not the pinned one %s: the address reaches another server, "+
				"or incusd's certificate changed; copy the Incus host's /var/lib/incus/server.crt again (scripts/incus-up --https prints where it is)",
				e.Server, short(pin.Got), short(pin.Want))
		}
		return fmt.Sprintf("incusd at %s presented a server certificate that does not verify: %v; give its certificate or CA as printed by scripts/incus-up --https",
			e.Server, cause(e.Err))
	case CauseUntrusted:
		return fmt.Sprintf("incusd at %s does not trust our client certificate %s: on the Incus host, trust it for project %s with "+
			"`incus config trust add-certificate CERT --restricted --projects %s` (scripts/incus-up --https does)",
			e.Server, short(e.ClientFP), e.Project, e.Project)
	case CauseOtherProject:
		return fmt.Sprintf("incusd at %s trusts our client certificate %s, but not for project %s (incusd: %q): the certificate is restricted to other projects; "+
			"on the Incus host add %s to them (`incus config trust edit %s`) or use a certificate trusted for it",
			e.Server, short(e.ClientFP), e.Project, statusMsg(e.Err), e.Project, short(e.ClientFP))
	case CauseNoProject:
		return fmt.Sprintf("incusd at %s has no project %s: create it (scripts/incus-up does) or name an existing one", e.Server, e.Project)
	}
	return fmt.Sprintf("incusd at %s: %v", e.Server, e.Err)
}

// cause is the innermost useful text of a transport error: without the
// method and URL that url.Error puts in front.
func cause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// statusMsg is incusd's own reason in err, else err's text.
func statusMsg(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Msg
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// CheckAccess makes sure the server can be used in the client's project:
// it answers, presents the expected certificate, trusts our client
// certificate, and for that project. Any other answer is an *AccessError
// naming the cause. Over the unix socket incusd trusts every caller, so
// only the project is checked there.
func (c *Client) CheckAccess(ctx context.Context) error {
	fail := func(cause AccessCause, err error) error {
		return &AccessError{Cause: cause, Server: c.base, Project: c.project, ClientFP: c.clientFP, Err: err}
	}
	s, err := c.Server(ctx)
	if err != nil {
		if cause := transportCause(err); cause != 0 {
			return fail(cause, err)
		}
		return err
	}
	if s.Auth != "trusted" {
		return fail(CauseUntrusted, fmt.Errorf("GET /1.0: auth %q", s.Auth))
	}
	if c.project == "" {
		return nil
	}
	err = c.get(ctx, "/projects/"+url.PathEscape(c.project), nil, nil)
	switch {
	case err == nil:
		return nil
	case StatusCode(err) == http.StatusForbidden || strings.Contains(statusMsg(err), "does not have permission"):
		return fail(CauseOtherProject, err)
	case IsNotFound(err):
		return fail(CauseNoProject, err)
	}
	return fmt.Errorf("incus: get project %s: %w", c.project, err)
}

// transportCause classifies an error of a request that got no answer: the
// server certificate refused, or no server reached; 0 for anything else.
func transportCause(err error) AccessCause {
	var (
		pin       *PinMismatchError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
		op        *net.OpError
		dns       *net.DNSError
		rec       tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &pin), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &verify):
		return CauseServerCert
	case errors.As(err, &dns), errors.As(err, &rec), errors.As(err, &op) && op.Op == "dial":
		return CauseUnreachable
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"),
		errors.Is(err, context.DeadlineExceeded) && strings.Contains(err.Error(), "dial"):
		return CauseUnreachable
	}
	return 0
}
