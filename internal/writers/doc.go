// Package writers holds the io.Writers several rooms need, written once:
// Locked serialises the writes of several goroutines (locked.go), and
// Lines cuts a stream into prefixed whole lines while holding at most a
// bounded line (lines.go). It is a leaf: the standard library only.
package writers
