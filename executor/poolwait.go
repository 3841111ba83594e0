package executor

import (
	"context"

	"jerichoci/model"
)

// A job that finds no idle instance while the pool is making one waits
// for that one rather than creating its own (docs/INCUS.md, "The warm
// pool's size"): the pool's create started earlier, so it is ready
// sooner, and incusd gets one create less in the middle of a burst.

// waiter is a job waiting for an instance being made.
type waiter struct {
	fingerprint string
	got         chan *warmInstance // buffered: the pool never blocks handing one
}

// TakeWait is Take, except that when no instance is idle and the pool is
// making more of the key than jobs already wait for, it waits (until ctx
// ends or the create fails) for one of those.
func (p *Pool) TakeWait(ctx context.Context, alias string, itype model.InstanceType, fingerprint string) (Taken, bool) {
	if t, ok := p.Take(alias, itype, fingerprint); ok {
		return t, true
	}
	k := poolKey{alias, itype}
	p.mu.Lock()
	if p.making[k] <= len(p.waiting[k]) || p.want[k] != fingerprint {
		p.mu.Unlock()
		return Taken{}, false
	}
	w := &waiter{fingerprint: fingerprint, got: make(chan *warmInstance, 1)}
	if p.waiting == nil {
		p.waiting = map[poolKey][]*waiter{}
	}
	p.waiting[k] = append(p.waiting[k], w)
	p.mu.Unlock()
	select {
	case wi := <-w.got:
		if wi == nil {
			return Taken{}, false
		}
		return Taken{Name: wi.name, pre: wi.pre, stateDir: wi.stateDir}, true
	case <-ctx.Done():
	}
	p.mu.Lock()
	for i, o := range p.waiting[k] {
		if o == w {
			p.waiting[k] = append(p.waiting[k][:i:i], p.waiting[k][i+1:]...)
			p.mu.Unlock()
			return Taken{}, false
		}
	}
	p.mu.Unlock()
	// Handed one as ctx ended: the job goes on with it, and its
	// teardown deletes it as any other.
	if wi := <-w.got; wi != nil {
		return Taken{Name: wi.name, pre: wi.pre, stateDir: wi.stateDir}, true
	}
	return Taken{}, false
}

// handLocked gives a new instance of k to the first job waiting for one
// of its image, or files it as idle.
func (p *Pool) handLocked(k poolKey, w *warmInstance) {
	for len(p.waiting[k]) > 0 {
		o := p.waiting[k][0]
		p.waiting[k] = p.waiting[k][1:]
		if o.fingerprint != w.fingerprint {
			o.got <- nil
			continue
		}
		p.stats.Taken++
		p.stats.Waited++
		o.got <- w
		return
	}
	p.idle[k] = append(p.idle[k], w)
}

// failWaiterLocked tells one waiting job of k that the create it waited
// for failed: it creates its own.
func (p *Pool) failWaiterLocked(k poolKey) {
	if len(p.waiting[k]) > len(p.idle[k])+p.making[k] && len(p.waiting[k]) > 0 {
		o := p.waiting[k][0]
		p.waiting[k] = p.waiting[k][1:]
		o.got <- nil
	}
}
