package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindArtifact(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    Artifact // paths relative to the dir
		wantErr string
	}{
		{name: "built image", files: map[string]string{"image.tar.gz": "x"}, want: Artifact{Unified: "image.tar.gz"}},
		{name: "original VM layout", files: map[string]string{"metadata.tar.xz": "m", "disk.qcow2": "d", "README.txt": "r"},
			want: Artifact{Meta: "metadata.tar.xz", Rootfs: "disk.qcow2", VM: true}},
		{name: "split container", files: map[string]string{"meta.tar.gz": "m", "rootfs.tar.gz": "r"},
			want: Artifact{Meta: "meta.tar.gz", Rootfs: "rootfs.tar.gz"}},
		{name: "squashfs", files: map[string]string{"metadata.tar.xz": "m", "rootfs.squashfs": "r"},
			want: Artifact{Meta: "metadata.tar.xz", Rootfs: "rootfs.squashfs"}},
		{name: "metadata without rootfs", files: map[string]string{"metadata.tar.xz": "m"}, wantErr: "want one rootfs"},
		{name: "two rootfs", files: map[string]string{"metadata.tar.xz": "m", "disk.qcow2": "d", "rootfs.tar.xz": "r"}, wantErr: "found 2"},
		{name: "two tarballs", files: map[string]string{"a.tar.gz": "a", "b.tar.xz": "b"}, wantErr: "several tarballs"},
		{name: "empty", files: map[string]string{"README.txt": "r"}, wantErr: "no image found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			got, err := FindArtifact(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FindArtifact() = %+v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			for _, p := range []*string{&want.Unified, &want.Meta, &want.Rootfs} {
				if *p != "" {
					*p = filepath.Join(dir, *p)
				}
			}
			if got != want {
				t.Fatalf("FindArtifact() = %+v, want %+v", got, want)
			}
		})
	}
	t.Run("a file is a unified tarball", func(t *testing.T) {
		p := filepath.Join(writeFiles(t, map[string]string{"x.tar": "x"}), "x.tar")
		if got, err := FindArtifact(p); err != nil || got != (Artifact{Unified: p}) {
			t.Fatalf("FindArtifact(file) = %+v, %v", got, err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := FindArtifact(filepath.Join(t.TempDir(), "result")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("FindArtifact(missing) error = %v, want not exist", err)
		}
	})
}

func TestFingerprint(t *testing.T) {
	dir := writeFiles(t, map[string]string{"metadata.tar.xz": "META", "disk.qcow2": "DISK", "image.tar": "ALL"})
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	tests := []struct {
		a    Artifact
		want string
	}{
		{Artifact{Unified: filepath.Join(dir, "image.tar")}, sum("ALL")},
		{Artifact{Meta: filepath.Join(dir, "metadata.tar.xz"), Rootfs: filepath.Join(dir, "disk.qcow2"), VM: true}, sum("METADISK")},
	}
	for _, tc := range tests {
		if got, err := tc.a.Fingerprint(); err != nil || got != tc.want {
			t.Errorf("Fingerprint(%+v) = %s, %v; want %s", tc.a, got, err, tc.want)
		}
	}
}

func TestBuildDir(t *testing.T) {
	opts := fakeHost(t)
	dir := filepath.Join(t.TempDir(), "result")
	a, img, err := BuildDir(t.Context(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Unified != filepath.Join(dir, ArtifactName) {
		t.Fatalf("BuildDir() artifact = %+v", a)
	}
	if fp, err := a.Fingerprint(); err != nil || fp != img.Fingerprint {
		t.Fatalf("artifact fingerprint %s, %v; built %s", fp, err, img.Fingerprint)
	}
	if found, err := FindArtifact(dir); err != nil || found != a {
		t.Fatalf("FindArtifact(built dir) = %+v, %v", found, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only %s (no temp files)", len(ents), ArtifactName)
	}
	split := writeFiles(t, map[string]string{"metadata.tar.xz": "m", "disk.qcow2": "d"})
	if _, _, err := BuildDir(t.Context(), split, opts); err == nil || !strings.Contains(err.Error(), "holds a split image") {
		t.Fatalf("BuildDir(split dir) error = %v", err)
	}
}

// fakeStore records the calls Import makes.
type fakeStore struct {
	aliases   map[string]string
	images    map[string]bool
	uploadFP  string // what Upload answers; "" = the artifact's fingerprint
	failOn    string // call name that fails
	calls     []string
	artifacts []Artifact
}

func (s *fakeStore) call(name string) error {
	s.calls = append(s.calls, name)
	if s.failOn == name {
		return errors.New(name + " failed")
	}
	return nil
}

func (s *fakeStore) AliasTarget(_ context.Context, alias string) (string, error) {
	return s.aliases[alias], s.call("AliasTarget")
}

func (s *fakeStore) HasImage(_ context.Context, fp string) (bool, error) {
	return s.images[fp], s.call("HasImage")
}

func (s *fakeStore) Upload(_ context.Context, a Artifact) (string, error) {
	if err := s.call("Upload"); err != nil {
		return "", err
	}
	s.artifacts = append(s.artifacts, a)
	fp := s.uploadFP
	if fp == "" {
		fp, _ = a.Fingerprint()
	}
	s.images[fp] = true
	return fp, nil
}

func (s *fakeStore) CreateAlias(_ context.Context, alias, fp, _ string) error {
	if err := s.call("CreateAlias"); err != nil {
		return err
	}
	s.aliases[alias] = fp
	return nil
}

func (s *fakeStore) MoveAlias(_ context.Context, alias, fp, _ string) error {
	if err := s.call("MoveAlias"); err != nil {
		return err
	}
	s.aliases[alias] = fp
	return nil
}

func (s *fakeStore) PruneImage(_ context.Context, fp string) (bool, error) {
	if err := s.call("PruneImage"); err != nil {
		return false, err
	}
	for _, t := range s.aliases {
		if t == fp {
			return false, nil
		}
	}
	delete(s.images, fp)
	return true, nil
}

func TestImport(t *testing.T) {
	dir := writeFiles(t, map[string]string{"image.tar.gz": "NEW"})
	a := Artifact{Unified: filepath.Join(dir, "image.tar.gz")}
	fp, _ := a.Fingerprint()
	const old = "0000000000000000000000000000000000000000000000000000000000000000"

	tests := []struct {
		name        string
		store       fakeStore
		want        ImportResult
		wantCalls   []string
		wantAliases map[string]string
		wantErr     string
	}{
		{
			name:        "fresh server",
			store:       fakeStore{aliases: map[string]string{}, images: map[string]bool{}},
			want:        ImportResult{Action: Uploaded, Fingerprint: fp},
			wantCalls:   []string{"AliasTarget", "HasImage", "Upload", "CreateAlias"},
			wantAliases: map[string]string{"pikaci/dev": fp},
		},
		{
			name:        "second run changes nothing",
			store:       fakeStore{aliases: map[string]string{"pikaci/dev": fp}, images: map[string]bool{fp: true}},
			want:        ImportResult{Action: Unchanged, Fingerprint: fp},
			wantCalls:   []string{"AliasTarget"},
			wantAliases: map[string]string{"pikaci/dev": fp},
		},
		{
			name:        "new build replaces the old image",
			store:       fakeStore{aliases: map[string]string{"pikaci/dev": old}, images: map[string]bool{old: true}},
			want:        ImportResult{Action: Uploaded, Fingerprint: fp, Previous: old, Pruned: true},
			wantCalls:   []string{"AliasTarget", "HasImage", "Upload", "MoveAlias", "PruneImage"},
			wantAliases: map[string]string{"pikaci/dev": fp},
		},
		{
			name:        "old image kept while another alias uses it",
			store:       fakeStore{aliases: map[string]string{"pikaci/dev": old, "keep": old}, images: map[string]bool{old: true}},
			want:        ImportResult{Action: Uploaded, Fingerprint: fp, Previous: old},
			wantCalls:   []string{"AliasTarget", "HasImage", "Upload", "MoveAlias", "PruneImage"},
			wantAliases: map[string]string{"pikaci/dev": fp, "keep": old},
		},
		{
			name:        "image present, alias missing",
			store:       fakeStore{aliases: map[string]string{}, images: map[string]bool{fp: true}},
			want:        ImportResult{Action: Aliased, Fingerprint: fp},
			wantCalls:   []string{"AliasTarget", "HasImage", "CreateAlias"},
			wantAliases: map[string]string{"pikaci/dev": fp},
		},
		{
			name:        "image present, alias elsewhere",
			store:       fakeStore{aliases: map[string]string{"pikaci/dev": old}, images: map[string]bool{fp: true, old: true}},
			want:        ImportResult{Action: Aliased, Fingerprint: fp, Previous: old, Pruned: true},
			wantCalls:   []string{"AliasTarget", "HasImage", "MoveAlias", "PruneImage"},
			wantAliases: map[string]string{"pikaci/dev": fp},
		},
		{
			name:    "server disagrees on the fingerprint",
			store:   fakeStore{aliases: map[string]string{}, images: map[string]bool{}, uploadFP: old},
			wantErr: "server computed fingerprint 0000",
		},
		{
			name:    "store error",
			store:   fakeStore{aliases: map[string]string{}, images: map[string]bool{}, failOn: "Upload"},
			wantErr: "Upload failed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.store
			got, err := Import(t.Context(), &s, a, "pikaci/dev", "desc")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Import() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Import() = %+v, want %+v", got, tc.want)
			}
			if !slices.Equal(s.calls, tc.wantCalls) {
				t.Errorf("calls = %q, want %q", s.calls, tc.wantCalls)
			}
			if len(s.aliases) != len(tc.wantAliases) {
				t.Errorf("aliases = %v, want %v", s.aliases, tc.wantAliases)
			}
			for k, v := range tc.wantAliases {
				if s.aliases[k] != v {
					t.Errorf("aliases = %v, want %v", s.aliases, tc.wantAliases)
				}
			}
		})
	}
}
