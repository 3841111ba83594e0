package guest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"jerichoci/model"
)

// The job's directories and environment, as the original's runner sets
// them up (docs/CONTRACTS.md, "Guest runner environment").

// ownedDirs are made (with missing parents) and given to the job user
// before every command, a root command's included.
var ownedDirs = []string{model.GuestUserHome, model.GuestCargoHome, model.GuestCargoTarget, model.GuestXDGStateHome}

// prepareDirs makes the job's directories: ownedDirs owned by the job
// user, then XDG_CACHE_HOME and XDG_STATE_HOME as the runner's own (root)
// when missing. A directory that cannot be given away stays as it is,
// said in the guest log.
func (r *Runner) prepareDirs(log io.Writer) error {
	for _, d := range ownedDirs {
		if err := r.ensureOwnedDir(d, log); err != nil {
			return err
		}
	}
	for _, d := range []string{model.GuestXDGCacheHome, model.GuestXDGStateHome} {
		if err := os.MkdirAll(r.path(d), 0o777); err != nil {
			return fmt.Errorf("make %s: %w", d, err)
		}
	}
	return nil
}

func (r *Runner) ensureOwnedDir(dir string, log io.Writer) error {
	p := r.path(dir)
	if err := os.MkdirAll(p, 0o777); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid == r.UID && st.Gid == r.GID {
		return nil
	}
	if err := r.chown(p, int(r.UID), int(r.GID)); err != nil {
		fmt.Fprintf(log, "[pikaci] leaving %s owned by %d:%d; expected %d:%d but chown is unsupported on this mount\n",
			dir, st.Uid, st.Gid, r.UID, r.GID)
	}
	return nil
}

// childEnv is the runner's own environment with model.GuestEnv set over
// it, then the secrets: a name already there keeps its place, a new one
// comes last.
func (r *Runner) childEnv(home string, secrets []string) []string {
	var env []string
	at := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := at[k]; ok {
			env[i] = kv
			return
		}
		at[k] = len(env)
		env = append(env, kv)
	}
	inherited := r.Environ()
	for _, kv := range inherited {
		set(kv)
	}
	for _, kv := range model.GuestEnv {
		switch kv {
		case "PATH=":
			path := ""
			if i, ok := at["PATH"]; ok {
				_, path, _ = strings.Cut(env[i], "=")
			}
			kv += model.GuestSystemBin + ":" + path
		case "HOME=":
			kv += home
		}
		set(kv)
	}
	for _, kv := range secrets {
		set(kv)
	}
	return env
}

// lookPath finds name in env's PATH, as the original's runner finds the
// commands it starts: the job's PATH, system profile first. An empty
// entry is the working directory.
func lookPath(env []string, name, workdir string) (string, error) {
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = workdir
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s in PATH %s", name, path)
}
