package main

import (
	"fmt"
	"os"

	"go.uber.org/zap"

	"jerichoci/run/protocol"
)

// publishDaemon writes the daemon file (--daemon-file) naming this serve's
// state root, its embedded server's client URL and its status page, and
// removes it when serve stops. Only a daemon with an embedded server
// publishes one: its clients' credentials are under its state root. A
// file that cannot be written is a warning: clients can still be given
// --state-root.
func (s *serving) publishDaemon(conns serveConns) {
	if s.cfg.daemonFile == "" || conns.inProcess == nil {
		return
	}
	cr, err := readRoleCredentials(s.stateRoot, protocol.RoleClient)
	url := cr.URL
	if err != nil {
		url = conns.url
	}
	remove, err := publishDaemonFile(s.cfg.daemonFile, daemonFile{StateRoot: s.stateRoot, NATSURL: url, StatusURL: s.statusURL, PID: os.Getpid()})
	if err != nil {
		s.log.Warn("clients will not find this daemon without --state-root", zap.Error(err))
		return
	}
	s.open.push("daemon file", remove)
	fmt.Fprintf(s.stderr, "jerichoci serve: clients in any directory find this daemon through %s\n", s.cfg.daemonFile)
}
