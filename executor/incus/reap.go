package incus

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	"go.uber.org/zap"

	"jerichoci/executor"
)

// ReapLocalOrphans deletes the instances that an earlier `jerichoci run` on
// this host left behind when it was killed (kill -9, power loss): their
// owner key is "<this hostname>-<pid>" and alive(pid) says that process is
// gone. Instances of live processes (this one included), of the daemon
// (other owner form) and without our keys are never touched. It writes a
// line to out for each instance deleted. Problems are logged, never fatal:
// this is tidying.
func ReapLocalOrphans(ctx context.Context, c *Client, alive func(pid int) bool, out io.Writer, log *zap.Logger) {
	host, err := os.Hostname()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	insts, err := c.ListInstances(ctx)
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
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		if err := c.DeleteInstance(ctx, in.Name); err != nil {
			log.Warn("delete orphaned instance", zap.String("instance", in.Name), zap.Error(err))
			continue
		}
		fmt.Fprintf(out, "jerichoci: deleted instance %s left by an earlier run (%s, job %s) whose process %d is gone\n",
			in.Name, in.Config[executor.ConfigRunID], in.Config[executor.ConfigJobID], pid)
	}
}
