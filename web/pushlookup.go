package web

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"jerichoci/run/protocol"
)

// A lane of a push that has no run yet is either waiting in the queue or
// was never queued: the push stopped before it (its publisher died or
// failed). The group's job_ids name each lane's job; the daemon knows
// the jobs it has queued, run or finished (jerichoci.lookup.<job_id>,
// docs/PROTOCOL.md). A lane whose job the daemon does not know is "not
// queued"; without a JobLookup, or when the daemon does not answer, the
// lane stays "queued" as before.

// JobLookup says where a daemon job stands: *protocol.Client does.
type JobLookup interface {
	Lookup(ctx context.Context, jobID string) (protocol.LookupReply, error)
}

const (
	// maxViewLookups bounds the lookups one page view makes; the lanes
	// past it stay "queued" until a later view (the answers are cached).
	maxViewLookups = 32
	// viewLookupTime bounds the time one page view spends on lookups.
	viewLookupTime = 2 * time.Second
	// unknownFor is how long an "unknown" answer is kept: a push still
	// publishing (or retrying a publication) queues the lane a moment
	// later. A known job stays known: its answer is kept for good.
	unknownFor = 15 * time.Second
	// maxKnownJobs bounds the cache; past it, the oldest half is dropped.
	maxKnownJobs = 4096
)

// jobAnswer is a cached lookup: whether the daemon knows the job.
type jobAnswer struct {
	known bool
	at    time.Time
}

// jobCache keeps lookup answers for every view of the server.
type jobCache struct {
	mu      sync.Mutex
	answers map[string]jobAnswer
}

func (c *jobCache) get(id string, now time.Time) (known, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.answers[id]
	if !ok || (!a.known && now.Sub(a.at) >= unknownFor) {
		return false, false
	}
	return a.known, true
}

func (c *jobCache) put(id string, known bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = map[string]jobAnswer{}
	}
	if len(c.answers) >= maxKnownJobs {
		c.trim(now)
	}
	c.answers[id] = jobAnswer{known: known, at: now}
}

// trim drops the expired unknown answers and, when that is not enough,
// the older half of the rest.
func (c *jobCache) trim(now time.Time) {
	var oldest time.Time
	for id, a := range c.answers {
		if !a.known && now.Sub(a.at) >= unknownFor {
			delete(c.answers, id)
		} else if oldest.IsZero() || a.at.Before(oldest) {
			oldest = a.at
		}
	}
	if len(c.answers) < maxKnownJobs {
		return
	}
	mid := oldest.Add(now.Sub(oldest) / 2)
	for id, a := range c.answers {
		if !a.at.After(mid) {
			delete(c.answers, id)
		}
	}
}

// view is one page view's lookups: at most maxViewLookups, within
// viewLookupTime of its start.
type view struct {
	ctx  context.Context
	left int
}

// newView starts a page view's lookups; end releases its deadline.
func (s *Server) newView(ctx context.Context) (v *view, end func()) {
	ctx, cancel := context.WithTimeout(ctx, viewLookupTime)
	return &view{ctx: ctx, left: maxViewLookups}, cancel
}

// neverQueued reports whether the daemon does not know job id: a lane
// that was never queued. false when it knows the job, when there is no
// JobLookup, when the view's lookups are spent, or when the daemon does
// not answer (such an answer is not kept).
func (s *Server) neverQueued(v *view, id string) bool {
	if s.cfg.Jobs == nil || id == "" || v == nil {
		return false
	}
	now := s.cfg.Now()
	if known, ok := s.jobs.get(id, now); ok {
		return !known
	}
	if v.left <= 0 || v.ctx.Err() != nil {
		return false
	}
	v.left--
	rep, err := s.cfg.Jobs.Lookup(v.ctx, id)
	if err != nil {
		s.cfg.Log.Debug("look up a push's lane", zap.String("job_id", id), zap.Error(err))
		return false
	}
	known := rep.State != protocol.ClaimUnknown
	s.jobs.put(id, known, now)
	return !known
}
