package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name    string
		old     string // "" : no file before
		data    string
		perm    os.FileMode
		missing bool // the directory does not exist
		wantErr string
	}{
		{name: "new file", data: "hello\n", perm: 0o644},
		{name: "replaces", old: "a much longer old content\n", data: "new\n", perm: 0o600},
		{name: "empty", old: "x", data: "", perm: 0o640},
		{name: "mode not reduced by the umask", data: "x", perm: 0o666},
		{name: "no directory", data: "x", perm: 0o644, missing: true, wantErr: "write "},
	}
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.missing {
				dir = filepath.Join(dir, "gone")
			}
			p := filepath.Join(dir, "state.json")
			if tc.old != "" {
				if err := os.WriteFile(p, []byte(tc.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFile(p, []byte(tc.data), tc.perm)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr+p) {
					t.Fatalf("WriteFile = %v, want an error naming %s", err, p)
				}
				return
			}
			if err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			b, err := os.ReadFile(p)
			if err != nil || string(b) != tc.data {
				t.Fatalf("content = %q, %v; want %q", b, err, tc.data)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != tc.perm {
				t.Errorf("mode = %v, want %v", fi.Mode().Perm(), tc.perm)
			}
			assertOnly(t, dir, "state.json")
		})
	}
}

func TestAbortKeepsTheOldContent(t *testing.T) {
	tests := []struct {
		name      string
		commit    bool
		want      string
		wantFiles []string
	}{
		{name: "abort", want: "old", wantFiles: []string{"f"}},
		{name: "commit then abort", commit: true, want: "new", wantFiles: []string{"f"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Create(p, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("new"); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(p); string(b) != "old" {
				t.Fatalf("before Commit the path holds %q", b)
			}
			if tc.commit {
				if err := f.Commit(); err != nil {
					t.Fatal(err)
				}
				if err := f.Commit(); err == nil {
					t.Error("a second Commit succeeded")
				}
			}
			f.Abort()
			f.Abort()
			if b, _ := os.ReadFile(p); string(b) != tc.want {
				t.Errorf("content = %q, want %q", b, tc.want)
			}
			assertOnly(t, dir, tc.wantFiles...)
		})
	}
}

// assertOnly fails unless dir holds exactly names (no temporary left).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("directory holds %q, want %q", got, names)
	}
}
