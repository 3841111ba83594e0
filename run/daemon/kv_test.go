package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/run/protocol"
)

// racingKV is a memKV where another writer wins the first `losses`
// compare-and-swaps: each write bumps the key's revision just before ours.
type racingKV struct {
	*memKV
	t      *testing.T
	losses int
	writes int
}

func (r *racingKV) race(key string) {
	r.writes++
	if r.writes <= r.losses {
		r.memKV.put(r.t, key, protocol.Claim{JobID: key, State: protocol.ClaimRunning, Worker: "other"}, time.Now())
	}
}

func (r *racingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	r.race(key)
	return r.memKV.Create(ctx, key, value, opts...)
}

func (r *racingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	r.race(key)
	return r.memKV.Update(ctx, key, value, rev)
}

func TestChangeClaimRetryPolicy(t *testing.T) {
	mine := func(cur *claimEntry) (*protocol.Claim, error) {
		return &protocol.Claim{JobID: "j", State: protocol.ClaimQueued, Worker: "me"}, nil
	}
	stop := errors.New("stop")
	ended, end := context.WithCancel(context.Background())
	end()
	tests := []struct {
		name       string
		ctx        context.Context
		losses     int
		edit       claimEdit
		wantErr    error
		wantWrites int
		wantWorker string // the claim's worker afterwards; "" = no claim
	}{
		{name: "first try wins", losses: 0, edit: mine, wantWrites: 1, wantWorker: "me"},
		{name: "wins after losing all but the last try", losses: claimTries - 1, edit: mine, wantWrites: claimTries, wantWorker: "me"},
		{name: "loses every try", losses: claimTries, edit: mine, wantErr: errClaimConflict, wantWrites: claimTries, wantWorker: "other"},
		{name: "context ends in the pause", ctx: ended, losses: claimTries, edit: mine, wantErr: context.Canceled, wantWrites: 1, wantWorker: "other"},
		{name: "edit writes nothing", edit: func(*claimEntry) (*protocol.Claim, error) { return nil, nil }},
		{name: "edit stops", edit: func(*claimEntry) (*protocol.Claim, error) { return nil, stop }, wantErr: stop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			kv := &racingKV{memKV: newMemKV(), t: t, losses: tc.losses}
			got, err := changeClaim(ctx, kv, "j", tc.edit)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("changeClaim error = %v, want %v", err, tc.wantErr)
			}
			if (got != nil) != (tc.wantErr == nil && tc.wantWrites > 0) {
				t.Errorf("changeClaim returned %+v with error %v", got, err)
			}
			if kv.writes != tc.wantWrites {
				t.Errorf("writes = %d, want %d", kv.writes, tc.wantWrites)
			}
			worker := ""
			if c := kv.claim(t, "j"); c != nil {
				worker = c.Worker
			}
			if worker != tc.wantWorker {
				t.Errorf("claim's worker = %q, want %q", worker, tc.wantWorker)
			}
		})
	}
}
