package main

import (
	"os"
	"testing"

	"jerichoci/internal/testenv"
	"jerichoci/internal/testlock"
)

// TestMain holds the shared incusd test lock for the package's whole run
// (the e2e and image tests use incusd); test/incusfault, which kills
// incusd, takes it exclusively. The fast run (-short) leaves those tests
// out, so it takes no lock.
func TestMain(m *testing.M) {
	if testenv.Short() {
		os.Exit(m.Run())
	}
	lock := testlock.MustShared()
	code := m.Run()
	lock.Release()
	os.Exit(code)
}
