package main

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process with this pid exists: how
// `jerichoci run` tells incus.ReapLocalOrphans whether the run that left an
// instance behind is gone.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
