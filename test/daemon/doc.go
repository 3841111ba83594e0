// Package daemon holds only tests (package daemon_test): they run
// `jerichoci serve` daemons as processes against a separate nats-server
// process and the real incusd, and check the daemon's promises: every job
// gets exactly one final record, a killed daemon's job runs again elsewhere
// and its instance is reaped, poison messages are terminated, a job id runs
// once, a cancel stops a job.
//
// Needs incusd with the runner image (scripts/incus-up) and bin/nats-server
// (built here from go.mod's version when missing). In CI (CI set) a missing
// piece fails the tests; elsewhere they are skipped with the reason.
package daemon
