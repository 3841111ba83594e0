package main

// The daemon file: a running `serve` says there which state root and NATS
// URL it has, so that enqueue, cancel and logs --follow find its
// credentials from any directory (README, "The daemon").

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"jerichoci/internal/atomicfile"
)

// envDaemonFile names the daemon file instead of the per-user locations;
// set but empty, serve publishes none.
const envDaemonFile = "JERICHOCI_DAEMON_FILE"

// daemonFileName is the file's name in the per-user directories.
const daemonFileName = "jerichoci/daemon.json"

// daemonFile is what serve publishes about itself.
type daemonFile struct {
	StateRoot string `json:"state_root"`
	NATSURL   string `json:"nats_url"`
	StatusURL string `json:"status_url,omitempty"`
	PID       int    `json:"pid"`
}

// daemonFileLocations returns where serve publishes its daemon file (the
// first) and where clients look for one, in order: $JERICHOCI_DAEMON_FILE
// alone when set (empty: nowhere); for root /run/jerichoci/daemon.json;
// for another user $XDG_RUNTIME_DIR/jerichoci/daemon.json (when set), then
// $XDG_STATE_HOME (default ~/.local/state)/jerichoci/daemon.json.
func daemonFileLocations(env func(string) (string, bool), euid int) []string {
	get := func(k string) string {
		if env == nil {
			return ""
		}
		v, _ := env(k)
		return v
	}
	if env != nil {
		if v, ok := env(envDaemonFile); ok {
			if v == "" {
				return nil
			}
			return []string{v}
		}
	}
	if euid == 0 {
		return []string{filepath.Join("/run", daemonFileName)}
	}
	var locs []string
	if d := get("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		locs = append(locs, filepath.Join(d, daemonFileName))
	}
	state := get("XDG_STATE_HOME")
	if !filepath.IsAbs(state) {
		if home := get("HOME"); filepath.IsAbs(home) {
			state = filepath.Join(home, ".local", "state")
		} else {
			state = ""
		}
	}
	if state != "" {
		locs = append(locs, filepath.Join(state, daemonFileName))
	}
	return locs
}

// readDaemonFile reads the daemon file at p.
func readDaemonFile(p string) (daemonFile, error) {
	var df daemonFile
	b, err := os.ReadFile(p)
	if err != nil {
		return df, err
	}
	if err := json.Unmarshal(b, &df); err != nil || !filepath.IsAbs(df.StateRoot) {
		return df, fmt.Errorf("daemon file %s: expected {\"state_root\": an absolute path, \"nats_url\", \"pid\"}", p)
	}
	return df, nil
}

// publishDaemonFile writes df to p (0644 in a 0755 directory: it holds no
// secret, the credentials stay 0600 under the state root). The function it
// returns removes the file if it is still this process's.
func publishDaemonFile(p string, df daemonFile) (remove func() error, err error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("daemon file %s: %w", p, err)
	}
	b, err := json.MarshalIndent(df, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("daemon file %s: %w", p, err)
	}
	return func() error {
		cur, err := readDaemonFile(p)
		if errors.Is(err, os.ErrNotExist) || (err == nil && cur.PID != df.PID) {
			return nil // another daemon's now
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("daemon file %s: %w", p, err)
		}
		return nil
	}, nil
}
