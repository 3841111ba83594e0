package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"jerichoci/model"
)

// passSecretEnv writes the job's secret_env into the guest, root's alone,
// at GuestSecretEnvPath, and names that file in req; the runner reads and
// deletes it. The request (which may sit on the host) only names it, and
// the values are masked in everything the host keeps (Job.Mask). A job
// without secrets passes nothing.
func (j *jobRun) passSecretEnv(ctx context.Context, req *model.GuestRequest) error {
	if len(j.job.SecretEnv) == 0 {
		return nil
	}
	b, err := json.Marshal(j.job.SecretEnv)
	if err != nil {
		return fmt.Errorf("encode secret environment: %w", err)
	}
	path := GuestSecretEnvPath
	if j.stateDir != "" {
		path = mountedSecretEnvPath // GuestDir is on the host's disk
	}
	if err := j.x.Backend.PushFile(ctx, j.name, path, b, 0, 0, 0o600); err != nil {
		return fmt.Errorf("write secret environment to %s: %w", j.name, err)
	}
	req.SecretEnvFile = path
	j.hostf("passing secret_env %s into the guest (values masked in logs)", strings.Join(slices.Sorted(maps.Keys(j.job.SecretEnv)), ", "))
	return nil
}
