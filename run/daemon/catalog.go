package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"

	"jerichoci/model"
	"jerichoci/run/protocol"
	"jerichoci/targets"
)

// Lanes from the repository (docs/CATALOG.md): a job's source may carry
// its own catalog file, targets.DefaultFile at its root. The daemon
// merges it over its own catalog for that job only, as `jerichoci run`
// merges a project catalog over the built-in one (targets.LoadProject),
// and resolves the spec's lane or target against the result once the
// source is there. What the source's jobs may do is bounded where it
// always was: host-local jobs, staged builds and secrets are refused at
// run time unless serve allows them (run.RefuseHostJobs,
// run.RefuseStagedBuilds, run.Runner.SecretEnvAllowed; docs/SECURITY.md).

// maxSourceCatalogBytes bounds the source's catalog file (the built-in
// catalog, every pika target, is about 40 KiB).
const maxSourceCatalogBytes = 4 << 20

// sourceCatalogName names the source's catalog file in errors.
const sourceCatalogName = "the source's " + targets.DefaultFile

// jobCatalog returns the catalog a job whose source is at srcRoot runs
// against: the daemon's own, or with the source's catalog file merged
// over it (or alone, when the file says "include_builtin": false). A
// catalog file that is not a regular file, too large or invalid is an
// error in the catalog's own words.
func (d *Daemon) jobCatalog(srcRoot string) (*targets.Catalog, error) {
	path := filepath.Join(srcRoot, targets.DefaultFile)
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return d.Catalog, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sourceCatalogName, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s): a source's catalog may not be a link or a special file", sourceCatalogName, fi.Mode().Type())
	}
	if fi.Size() > maxSourceCatalogBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a catalog file may have", sourceCatalogName, fi.Size(), maxSourceCatalogBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sourceCatalogName, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSourceCatalogBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sourceCatalogName, err)
	}
	if len(data) > maxSourceCatalogBytes {
		return nil, fmt.Errorf("%s: more than the %d bytes a catalog file may have", sourceCatalogName, maxSourceCatalogBytes)
	}
	local, err := targets.Parse(targets.DefaultFile, data)
	if err != nil {
		return nil, err
	}
	if !local.IncludesBuiltin() {
		return local, nil
	}
	return d.Catalog.Merge(local)
}

// checkRuntime refuses a spec whose runtime override this daemon cannot honour.
func checkRuntime(spec model.JobSpec) error {
	if rt := spec.Runtime; rt != nil && rt.Kind != model.RuntimeIncus {
		return fmt.Errorf("field `runtime`: kind %q: this daemon runs jobs in Incus only; expected \"incus\"", rt.Kind)
	}
	return nil
}

// lookup finds the spec's lane or target in cat.
func lookup(cat *targets.Catalog, spec model.JobSpec) (targets.Target, error) {
	if spec.Lane == "" {
		return cat.Lookup(spec.Target)
	}
	t, err := cat.LookupLane(spec.Lane)
	if err != nil {
		if _, terr := cat.Lookup(spec.Lane); terr == nil {
			err = fmt.Errorf("%w: no lane has this title, but a target has this id: send it as `target`", err)
		}
	}
	return t, err
}

// resolveInSource resolves the spec against the job's catalog once its
// source is at srcRoot (see jobCatalog).
func (a *attempt) resolveInSource(srcRoot string) error {
	cat, err := a.d.jobCatalog(srcRoot)
	if err != nil {
		return err
	}
	if cat == a.d.Catalog && a.target != nil {
		return nil // resolved at admission
	}
	t, err := lookup(cat, *a.spec)
	if err != nil {
		a.target = nil // the source's catalog decides, even against the daemon's
		return err
	}
	a.target = &t
	return nil
}

// CatalogReply is the daemon's answer to a catalog request: its own
// catalog's lanes and targets.
func (d *Daemon) CatalogReply() protocol.CatalogReply {
	rep := protocol.CatalogReply{Daemon: d.Config.ID, Catalog: d.Catalog.Name(), Targets: []protocol.CatalogEntry{}}
	for _, t := range d.Catalog.Targets() {
		e := protocol.CatalogEntry{ID: t.ID, Description: t.Description, Lane: t.Lane, ConcurrencyGroup: t.ConcurrencyGroup,
			Jobs: len(t.Jobs), Filters: t.Filters, Source: t.Source}
		if t.Trigger != targets.TriggerNone {
			e.Trigger = string(t.Trigger)
		}
		if t.Trigger == targets.TriggerBranch {
			e.Paths = append(append([]string{}, t.LaneDefinitionPaths...), t.Filters...)
		}
		rep.Targets = append(rep.Targets, e)
	}
	return rep
}

// SubscribeCatalog answers catalog requests on protocol.SubjectCatalog
// with answer's reply; the daemons of a fleet share a queue group, so one
// answers each request.
func (q *Queue) SubscribeCatalog(answer func() protocol.CatalogReply) (*nats.Subscription, error) {
	sub, err := q.nc.QueueSubscribe(protocol.SubjectCatalog, protocol.CatalogQueueGroup, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		b, err := encodeJSON(answer())
		if err != nil {
			b, _ = encodeJSON(protocol.CatalogReply{Error: err.Error()})
		}
		_ = m.Respond(b) // the requester may be gone
	})
	if err == nil {
		err = q.nc.Flush() // registered with the server before we say we listen
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", protocol.SubjectCatalog, err)
	}
	return sub, nil
}
