package main

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"

	"jerichoci/lanes"
	"jerichoci/model"
	"jerichoci/run"
)

// pushRequest is `enqueue` asked for several lanes at once: LANE… (more
// than one), --changed [PATH…] (the branch lanes the changed paths select)
// or --group ID. Every job of the push carries the same job spec `group`,
// so the status page shows them as one push (docs/PROTOCOL.md).
type pushRequest struct {
	names    []string
	source   string
	hostPath bool
	catalog  string
	changed  bool
	group    string
	wait     bool
	jobID    string
}

var headPattern = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// enqueuePush queues one job per lane of the push, all with one source
// upload and one group, and prints the push's number (the work stream's
// sequence of its first job) and each job id with its lane.
func (c *cli) enqueuePush(ctx context.Context, fs *flag.FlagSet, ncfg *natsConfig, p pushRequest) int {
	switch {
	case p.wait:
		return c.usageErr(fs, "--wait follows one job: give one LANE, or follow a push's jobs on the status page")
	case p.jobID != "":
		return c.usageErr(fs, "--job-id names one job: a push of several lanes gets a new id per job")
	case !p.changed && len(p.names) == 0:
		return c.usageErr(fs, "expected LANE… (or --changed [PATH…]), got no lane")
	}
	if p.group != "" && !validGroup(p.group) {
		return c.usageErr(fs, "--group %q: expected 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", p.group)
	}
	if err := ncfg.clientReady(); err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	src, err := sourceDir(p.source)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	git := run.ReadGit(ctx, src)
	var head string
	var changedFiles []string
	if git.OK {
		if git.Head != nil && headPattern.MatchString(*git.Head) {
			head = *git.Head
		}
		changedFiles = append([]string{}, git.Changed...)
	}
	// The source's catalog over the built-in one, as the daemon will merge it.
	cat, catErr := c.sourceCatalog(p.catalog, src)
	names := p.names
	if p.changed {
		if catErr != nil {
			return c.fail(exitUsage, "--changed selects lanes from the catalog: %v", catErr)
		}
		paths := p.names
		if len(paths) == 0 {
			paths = changedFiles
		} else {
			changedFiles = paths // the jobs filter by the paths the user named
		}
		names = nil
		for _, l := range lanes.FromCatalog(cat).Select(paths) {
			names = append(names, l.Title)
		}
		if len(names) == 0 {
			fmt.Fprintf(c.stderr, "jerichoci enqueue: no branch lane matches the %d changed path(s); nothing queued\n", len(paths))
			return exitOK
		}
	}
	group := p.group
	if group == "" {
		group = "push-" + uuid.NewString()[:8]
		if head != "" {
			group = "push-" + head[:7] + "-" + uuid.NewString()[:8]
		}
	}
	if catErr != nil {
		return c.fail(exitUsage, "%v", catErr)
	}
	client, closeConn, err := ncfg.dialClient("jerichoci enqueue")
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer closeConn()
	// Every lane is known (to the source's catalog or the daemon's) before
	// any is queued: a push with a typo queues nothing. The job ids are
	// drawn first, so the group names each lane's job (docs/PROTOCOL.md).
	ids := make([]string, len(names))
	specs := make([]model.JobSpec, len(names))
	for i := range names {
		specs[i].JobID = uuid.New()
		ids[i] = specs[i].JobID.String()
	}
	grp := &model.JobGroup{ID: group, Lanes: names, JobIDs: ids}
	for i, name := range names {
		s := model.JobSpec{SchemaVersion: model.JobSpecVersion, JobID: specs[i].JobID, Target: name, Requester: requester(),
			GitHead: head, ChangedFiles: changedFiles, Group: grp}
		lane, err := enqueueName(ctx, cat, client, name)
		if err != nil {
			return c.fail(exitUsage, "push: %v; nothing was queued", err)
		}
		if lane {
			s.Lane, s.Target = name, ""
		}
		specs[i] = s
	}
	opCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	source := model.SourceRef{Kind: model.SourceHostPath, Path: src}
	if !p.hostPath {
		if source, err = uploadSource(opCtx, client, src); err != nil {
			return c.fail(exitUsage, "%v", err)
		}
	}
	for i := range specs {
		specs[i].Source = source
	}
	return c.publishPush(opCtx, ctx, client, group, specs)
}

func validGroup(s string) bool {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`).MatchString(s)
}
