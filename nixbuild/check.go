package nixbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// ErrUnsafeNix is wrapped by CheckSandboxed's error for a host whose Nix
// would run a flake's builders unsandboxed or as root, or whose daemon
// does not answer.
var ErrUnsafeNix = errors.New("this host's Nix cannot build untrusted flakes safely")

// CheckSandboxed tells whether the host's Nix builds staged outputs the
// way docs/SECURITY.md promises: through a nix-daemon that answers, in the
// sandbox (sandbox = true, without sandbox-fallback, which silently builds
// unsandboxed where the kernel refuses the sandbox), and as build users
// rather than as root (build-users-group set, or auto-allocate-uids on).
// It reads the settings with `nix config show --json` (Nix 2.20 and
// later), else `nix show-config --json` (Nix 2.8), run exactly as the
// builds' nix calls are (same user, same environment), and names each
// setting that is wrong with its value.
//
// The settings are those the nix client reads (nix.conf, NIX_CONFIG); the
// daemon reads the same /etc/nix/nix.conf on a standard install, and a
// daemon started with another configuration is not seen here.
func (b *Builder) CheckSandboxed(ctx context.Context) error {
	prog, err := exec.LookPath(b.program())
	if err != nil {
		return fmt.Errorf("%w: `%s` was not found (%v); install it (on Debian: `sudo scripts/nix-up`)", ErrNoNix, b.program(), err)
	}
	as, err := b.identity()
	if err != nil {
		return err
	}
	var log bytes.Buffer
	if _, err := b.nix(ctx, prog, as, &log, "store ping"); err != nil {
		return fmt.Errorf("%w: the nix-daemon does not answer (`nix store ping --store daemon`: %v): start it (`sudo scripts/nix-up` does): %s",
			ErrUnsafeNix, err, nixSaid(log.Bytes()))
	}
	log.Reset()
	out, err := b.nix(ctx, prog, as, io.Discard, "config show", "--json")
	if err != nil {
		out, err = b.nix(ctx, prog, as, &log, "show-config", "--json")
	}
	if err != nil {
		return fmt.Errorf("read the host's Nix settings: %w: %s", err, nixSaid(log.Bytes()))
	}
	s, err := decodeSettings(out)
	if err != nil {
		return fmt.Errorf("read the host's Nix settings: %w", err)
	}
	if problems := s.problems(); len(problems) > 0 {
		return fmt.Errorf("%w: %s; set them in /etc/nix/nix.conf and restart nix-daemon (`sudo scripts/nix-up` does both where the machine has no Nix configuration of its own)",
			ErrUnsafeNix, strings.Join(problems, "; "))
	}
	return nil
}

// settings are the Nix settings CheckSandboxed judges.
type settings struct {
	Sandbox         string // "true", "false" or "relaxed"
	SandboxFallback bool
	BuildUsersGroup string
	AutoAllocUIDs   bool
}

// problems names each setting that lets a builder out of the sandbox or
// run it as root, with its value and what it must be.
func (s settings) problems() []string {
	var p []string
	switch s.Sandbox {
	case "true":
	case "relaxed":
		p = append(p, "sandbox = relaxed lets fixed-output and __noChroot derivations build unsandboxed (want sandbox = true)")
	default:
		p = append(p, fmt.Sprintf("sandbox = %s builds unsandboxed (want sandbox = true)", s.Sandbox))
	}
	if s.SandboxFallback {
		p = append(p, "sandbox-fallback = true builds unsandboxed where the kernel refuses the sandbox (want sandbox-fallback = false)")
	}
	if s.BuildUsersGroup == "" && !s.AutoAllocUIDs {
		p = append(p, `build-users-group = "" builds as the daemon's user, root (want build-users-group = nixbld, a group of build users)`)
	}
	return p
}

// decodeSettings reads `nix show-config --json` (Nix 2.8: each setting an
// object with its "value") or `nix config show --json`; a setting that is
// a bare value (no "value" field) is read as that value.
func decodeSettings(b []byte) (settings, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return settings{}, fmt.Errorf("decode %q: want an object of settings: %w", clip(b), err)
	}
	value := func(name string) (json.RawMessage, bool) {
		raw, ok := all[name]
		if !ok {
			return nil, false
		}
		var wrapped struct {
			Value *json.RawMessage `json:"value"`
		}
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) && json.Unmarshal(raw, &wrapped) == nil && wrapped.Value != nil {
			return *wrapped.Value, true
		}
		return raw, true
	}
	var s settings
	var errs []error
	// sandbox is true, false or "relaxed" (a string in some versions).
	if raw, ok := value("sandbox"); !ok {
		errs = append(errs, errors.New("no setting `sandbox`"))
	} else {
		var bv bool
		var sv string
		switch {
		case json.Unmarshal(raw, &bv) == nil:
			s.Sandbox = fmt.Sprint(bv)
		case json.Unmarshal(raw, &sv) == nil && (sv == "true" || sv == "false" || sv == "relaxed"):
			s.Sandbox = sv
		default:
			errs = append(errs, fmt.Errorf("setting `sandbox` is %s: want true, false or \"relaxed\"", clip(raw)))
		}
	}
	boolean := func(name string, dst *bool, required bool) {
		raw, ok := value(name)
		if !ok {
			if required {
				errs = append(errs, fmt.Errorf("no setting `%s`", name))
			}
			return
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			errs = append(errs, fmt.Errorf("setting `%s` is %s: want true or false", name, clip(raw)))
		}
	}
	boolean("sandbox-fallback", &s.SandboxFallback, true)
	boolean("auto-allocate-uids", &s.AutoAllocUIDs, false) // Nix 2.12 and later
	if raw, ok := value("build-users-group"); !ok {
		errs = append(errs, errors.New("no setting `build-users-group`"))
	} else if err := json.Unmarshal(raw, &s.BuildUsersGroup); err != nil {
		errs = append(errs, fmt.Errorf("setting `build-users-group` is %s: want a string", clip(raw)))
	}
	if err := errors.Join(errs...); err != nil {
		return settings{}, fmt.Errorf("nix settings: %w", err)
	}
	return s, nil
}

// nixSaid returns the last lines nix printed into a log of Builder.nix,
// without the command line it starts with.
func nixSaid(log []byte) string {
	var said []string
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if l != "" && !strings.HasPrefix(l, "[pikaci] ") {
			said = append(said, l)
		}
	}
	if len(said) > 3 {
		said = said[len(said)-3:]
	}
	if len(said) == 0 {
		return "(nix printed nothing)"
	}
	return strings.Join(said, " / ")
}
