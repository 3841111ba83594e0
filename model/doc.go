// Package model is jerichoci's domain at the bottom of every import chain:
// the types and rules every other package shares, with the standard library
// and uuid as its only imports (scripts/check-imports).
//
// It holds the original pikaci's records exactly as its readers expect them
// (docs/CONTRACTS.md): run and job records, image and phase records, the
// prepared-output records of staged runs, lifecycle events, the guest's
// terminal result and their timestamp format; the names the original
// computes for instances and disk devices; guest roles and how they resolve;
// the job command kinds and their compilation into a guest request. It also
// holds what jerichoci adds: the job spec of the daemon's work queue
// (docs/PROTOCOL.md, "Job spec") and the strict JSON decoder behind it, which
// reports every problem of a document at once.
package model
