package main

// How a client command finds its daemon's credentials without flags
// (README, "The daemon"): the state root given (--state-root, the global
// --state-root, $PIKACI_STATE_ROOT); else the state roots that running
// daemons published in their daemon files; else ./.pikaci. Every place
// tried is named when none serves.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"jerichoci/run/protocol"
)

// geteuid is the user whose daemon files a client reads (tests set it).
var geteuid = os.Geteuid

// lookup is where a client looked for credentials: the candidate file
// and what it found there.
type lookup struct {
	path, outcome string
}

// clientLookups holds what a client command needs to find its daemon and
// to explain where it looked.
type clientLookups struct {
	// daemonFiles are the daemon files to read, in order.
	daemonFiles []string
	// cwdRoot is ./.pikaci, the last resort.
	cwdRoot string
	// tried is every place looked at, in order.
	tried []lookup
}

// candidateStateRoots returns the state roots to try, in order: the one
// given (flag or environment) alone, else those of the daemon files, then
// ./.pikaci; it notes the daemon files it read in lookups.tried.
func (c *natsConfig) candidateStateRoots() []string {
	l := &c.lookups
	if c.StateRoot != "" { // given: only it
		return []string{c.StateRoot}
	}
	var roots []string
	for _, p := range l.daemonFiles {
		df, err := readDaemonFile(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			l.tried = append(l.tried, lookup{p, "no daemon file (no jerichoci serve running as this user published one)"})
		case err != nil:
			l.tried = append(l.tried, lookup{p, err.Error()})
		default:
			l.tried = append(l.tried, lookup{p, fmt.Sprintf("names state root %s (pid %d, %s)", df.StateRoot, df.PID, df.NATSURL)})
			roots = append(roots, df.StateRoot)
		}
	}
	if l.cwdRoot != "" {
		roots = append(roots, l.cwdRoot)
	}
	return roots
}

// findStateCredentials is useStateCredentials' search: the first state
// root of candidateStateRoots with the role's credentials (client.json;
// for the reader reader.json, else client.json of an older daemon).
func (c *natsConfig) findStateCredentials(role protocol.Role) (credentials, bool, error) {
	for _, root := range c.candidateStateRoots() {
		cr, err := readRoleCredentials(root, role)
		if errors.Is(err, os.ErrNotExist) && role == protocol.RoleReader {
			cr, err = readRoleCredentials(root, protocol.RoleClient)
		}
		p := roleCredentialsPath(root, role)
		switch {
		case errors.Is(err, os.ErrNotExist):
			c.lookups.tried = append(c.lookups.tried, lookup{p, "not found"})
			continue
		case err != nil:
			c.lookups.tried = append(c.lookups.tried, lookup{p, err.Error()})
			return cr, false, err
		}
		c.lookups.tried = append(c.lookups.tried, lookup{p, "used"})
		return cr, true, nil
	}
	return credentials{}, false, nil
}

// credentialsHint explains, after an authorization violation, where the
// client looked for credentials and how to give them.
func (c natsConfig) credentialsHint() string {
	var b strings.Builder
	if len(c.lookups.tried) == 0 {
		b.WriteString("no daemon credentials were looked for")
	} else {
		b.WriteString("looked for the daemon's credentials in:")
		for _, t := range c.lookups.tried {
			fmt.Fprintf(&b, "\n  %s: %s", t.path, t.outcome)
		}
	}
	fmt.Fprintf(&b, "\nfix: pass the daemon's state root (--state-root DIR or %s=DIR; `make run` keeps it in .pikaci of the jerichoci checkout), where jerichoci serve wrote nats/%s; or give --nats-user with JERICHOCI_NATS_PASSWORD", envStateRoot, roleFile(c.role))
	return b.String()
}

// noDaemonHint explains that nothing answers at url and how to start a daemon.
func noDaemonHint(url string) string {
	return fmt.Sprintf("no daemon answers at %s: start one with `make run` in the jerichoci checkout or `jerichoci serve`, or give the daemon's --nats-url", url)
}

// connectError words a failed NATS connection for a person: no server,
// or a refused login with the places looked at.
func (c natsConfig) connectError(url string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("%s (%w)", noDaemonHint(url), err)
	case errors.Is(err, nats.ErrAuthorization) && !c.explicitAuth():
		return fmt.Errorf("connect to NATS at %s: %w\n%s", url, err, c.credentialsHint())
	}
	return fmt.Errorf("connect to NATS at %s: %w", url, err)
}

// clientLookupsFrom sets up the search of a client command given no
// state root: the daemon files of this user, then ./.pikaci.
func clientLookupsFrom(env func(string) (string, bool), euid int) clientLookups {
	l := clientLookups{daemonFiles: daemonFileLocations(env, euid)}
	if cwd, err := os.Getwd(); err == nil {
		l.cwdRoot = filepath.Join(cwd, ".pikaci")
	}
	return l
}
