package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
	"jerichoci/executor/incus"
)

// reapLocalOrphans deletes the instances that an earlier `jerichoci run` on
// this host left behind when it was killed (kill -9, power loss): their
// owner key is "<this hostname>-<pid>" and that process is gone. Instances
// of live processes, of the daemon (other owner form) and without our keys
// are never touched. Problems are logged, never fatal: this is tidying.
func reapLocalOrphans(ctx context.Context, stderr io.Writer, cl *incus.Client, log *zap.Logger) {
	host, err := os.Hostname()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	insts, err := cl.ListInstances(ctx)
	if err != nil {
		log.Warn("list instances for orphans", zap.Error(err))
		return
	}
	owner := regexp.MustCompile("^" + regexp.QuoteMeta(host) + `-([0-9]+)$`)
	for _, in := range insts {
		m := owner.FindStringSubmatch(in.Config[executor.ConfigOwner])
		if m == nil || in.Config[executor.ConfigRunID] == "" {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := cl.DeleteInstance(ctx, in.Name); err != nil {
			log.Warn("delete orphaned instance", zap.String("instance", in.Name), zap.Error(err))
			continue
		}
		fmt.Fprintf(stderr, "jerichoci: deleted instance %s left by an earlier run (%s, job %s) whose process %d is gone\n",
			in.Name, in.Config[executor.ConfigRunID], in.Config[executor.ConfigJobID], pid)
	}
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
