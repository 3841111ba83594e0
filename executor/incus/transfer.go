package incus

import (
	"context"
	"fmt"
	"io"
	"strings"

	"jerichoci/executor"
)

// The archive moves of executor.ArchiveMover, with the guest's own `sh`
// and `tar` (GNU tar in the pikaci images, busybox tar in others): one
// file push and one exec in, one exec out (docs/INCUS.md, "Files in and
// out: mounts or the API").

var _ executor.ArchiveMover = (*Backend)(nil)

// archiveInPath is where an archive lands before it is unpacked: on the
// root disk, not in a tmpfs, and removed once unpacked.
const archiveInPath = "/.jerichoci-in.tar"

// stderrKeep is how much of a tar's complaints a message quotes.
const stderrKeep = 4096

// PushArchive pushes the tar stream r to the instance as one file and
// unpacks it at / as root, keeping the archive's owners and modes.
func (b *Backend) PushArchive(ctx context.Context, name string, r io.Reader) error {
	if err := b.c.PushFile(ctx, name, archiveInPath, r, FileOwner{Mode: 0o600}); err != nil {
		return err
	}
	const script = `tar -x -p -f "$0" -C /; rc=$?; rm -f "$0"; exit $rc`
	var stderr keepWriter
	code, err := b.Exec(ctx, name, executor.ExecRequest{Command: []string{"sh", "-c", script, archiveInPath}, Cwd: "/"}, io.Discard, &stderr)
	if err != nil {
		return fmt.Errorf("incus: unpack an archive in instance %q: %w", name, err)
	}
	if code != 0 {
		return fmt.Errorf("incus: unpack an archive in instance %q: tar exited with %d: %s", name, code, stderr.text())
	}
	return nil
}

// PullArchive runs tar in the instance over the names that are regular
// files in dir, and copies its archive to w as it comes. None of them
// there is an empty archive (two zero blocks), so the caller sees each
// one missing.
func (b *Backend) PullArchive(ctx context.Context, name, dir string, names []string, w io.Writer) error {
	// $0 is dir, the rest the names: a name that is not a regular file
	// (missing, a symlink, a directory) is left out.
	const script = `cd "$0" || exit 3
set --; for f in ` + "$NAMES" + `; do [ -f "$f" ] && [ ! -L "$f" ] && set -- "$@" "$f"; done
if [ $# -eq 0 ]; then head -c 1024 /dev/zero; exit 0; fi
exec tar -c -f - "$@"`
	quoted := make([]string, len(names))
	for i, n := range names {
		if strings.ContainsAny(n, "'\n") {
			return fmt.Errorf("incus: pull an archive from instance %q: name %q cannot be quoted", name, n)
		}
		quoted[i] = "'" + n + "'"
	}
	cmd := strings.Replace(script, "$NAMES", strings.Join(quoted, " "), 1)
	var stderr keepWriter
	code, err := b.Exec(ctx, name, executor.ExecRequest{Command: []string{"sh", "-c", cmd, dir}, Cwd: "/"}, w, &stderr)
	switch {
	case err != nil:
		return fmt.Errorf("incus: pull an archive from instance %q: %w", name, err)
	case code == 126 || code == 127:
		return fmt.Errorf("incus: pull an archive from instance %q: exit %d: %s: %w", name, code, stderr.text(), executor.ErrNoArchiver)
	case code != 0:
		return fmt.Errorf("incus: pull an archive from instance %q: tar exited with %d: %s", name, code, stderr.text())
	}
	return nil
}

// keepWriter keeps the first stderrKeep bytes written to it.
type keepWriter struct{ b strings.Builder }

func (k *keepWriter) Write(p []byte) (int, error) {
	if room := stderrKeep - k.b.Len(); room > 0 {
		k.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (k *keepWriter) text() string { return strings.TrimSpace(k.b.String()) }
