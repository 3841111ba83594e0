// Package incusfault holds only tests: they kill the local incusd (kill -9)
// while a daemon runs a job, start it again with scripts/incus-up and check
// that the job is retried as an infrastructure failure and passes, that no
// instance of it leaks, and that incusd is up and ready afterwards.
//
// Other test packages (executor/incus, cmd/jerichoci, test/daemon) use the
// same incusd and run in parallel under `go test ./...`: each holds the
// incusd test lock (internal/testlock) shared for its whole run, and this
// package holds it exclusively, so incusd is never killed under them. It
// also waits for instances of anything else (a `make run` daemon, an older
// test binary) to be gone before it kills incusd.
//
// Needs root, incusd with the runner image (scripts/incus-up) and
// bin/nats-server (built here from go.mod's version when missing). In CI
// (CI set) a missing piece fails the test; elsewhere it is skipped with the
// reason. A restart of incusd that fails fails the test everywhere.
package incusfault
