package main

import (
	"os"
	"testing"

	"jerichoci/internal/testlock"
)

// TestMain holds the shared incusd test lock for the package's whole run
// (the e2e and image tests use incusd); test/incusfault, which kills
// incusd, takes it exclusively.
func TestMain(m *testing.M) {
	lock := testlock.MustShared()
	code := m.Run()
	lock.Release()
	os.Exit(code)
}
