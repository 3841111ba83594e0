package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/internal/backoff"
	"jerichoci/model"
	"jerichoci/run/protocol"
)

// claimEntry is a claim with its revision, for compare-and-swap.
type claimEntry struct {
	protocol.Claim
	rev     uint64
	written time.Time // server time of the last write
}

// errClaimConflict is a lost compare-and-swap: someone wrote first.
var errClaimConflict = errors.New("claim changed concurrently")

func getClaim(ctx context.Context, kv KV, jobID string) (*claimEntry, error) {
	e, err := kv.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get claim %s: %w", jobID, err)
	}
	var c protocol.Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("claim %s: %w", jobID, err)
	}
	return &claimEntry{Claim: c, rev: e.Revision(), written: e.Created()}, nil
}

// createClaim writes a claim only if the job has none; errClaimConflict if
// it has.
func createClaim(ctx context.Context, kv KV, c protocol.Claim, opts ...jetstream.KVCreateOpt) (*claimEntry, error) {
	b, err := encodeJSON(c)
	if err != nil {
		return nil, err
	}
	rev, err := kv.Create(ctx, c.JobID, b, opts...)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, errClaimConflict
	}
	if err != nil {
		return nil, fmt.Errorf("create claim %s: %w", c.JobID, err)
	}
	return &claimEntry{Claim: c, rev: rev, written: time.Now()}, nil
}

// updateClaim replaces the claim at revision prev; errClaimConflict if it
// moved on.
func updateClaim(ctx context.Context, kv KV, c protocol.Claim, prev uint64) (*claimEntry, error) {
	b, err := encodeJSON(c)
	if err != nil {
		return nil, err
	}
	rev, err := kv.Update(ctx, c.JobID, b, prev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return nil, errClaimConflict
	}
	if err != nil {
		return nil, fmt.Errorf("update claim %s: %w", c.JobID, err)
	}
	return &claimEntry{Claim: c, rev: rev, written: time.Now()}, nil
}

// Every change to a claim goes through changeClaim, under one retry
// policy: a compare-and-swap that loses to another writer reads the claim
// again and retries, at most claimTries writes in all, pausing between
// them with claimBackoff (5ms doubling to 200ms, about 1.5s over the nine
// pauses); ctx bounds the whole change, pauses included. The writers race
// only briefly (a heartbeat, a cancel, a release, a takeover), so losing
// every try means something is wrong and is reported as errClaimConflict.
const claimTries = 10

var claimBackoff = backoff.Backoff{First: 5 * time.Millisecond, Max: 200 * time.Millisecond}

// claimEdit is one change to a job's claim: given the claim as it is now
// (nil when the job has none), the claim to write, or nil to write
// nothing, or an error to stop with. changeClaim may call it once per try.
type claimEdit func(cur *claimEntry) (*protocol.Claim, error)

// changeClaim reads the job's claim, asks edit for the next one and writes
// it with compare-and-swap: created (with opts) when the job has none, else
// updated at the revision read. It returns the claim written, or nil when
// edit wrote nothing; edit's error as it is; errClaimConflict (wrapped)
// when every try lost the race.
func changeClaim(ctx context.Context, kv KV, jobID string, edit claimEdit, opts ...jetstream.KVCreateOpt) (*claimEntry, error) {
	pause := claimBackoff
	for try := 1; ; try++ {
		cur, err := getClaim(ctx, kv, jobID)
		if err != nil {
			return nil, err
		}
		next, err := edit(cur)
		if err != nil || next == nil {
			return nil, err
		}
		var got *claimEntry
		if cur == nil {
			got, err = createClaim(ctx, kv, *next, opts...)
		} else {
			got, err = updateClaim(ctx, kv, *next, cur.rev)
		}
		if !errors.Is(err, errClaimConflict) {
			return got, err
		}
		if try == claimTries {
			return nil, fmt.Errorf("claim %s: %w %d times in a row", jobID, errClaimConflict, claimTries)
		}
		if err := pause.Wait(ctx); err != nil {
			return nil, fmt.Errorf("claim %s: %w", jobID, err)
		}
	}
}

// getResult returns the job's final record, or nil when it has none.
func getResult(ctx context.Context, kv KV, jobKey string) (*model.RunRecord, error) {
	e, err := kv.Get(ctx, jobKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get result %s: %w", jobKey, err)
	}
	var r model.RunRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("result %s: %w", jobKey, err)
	}
	return &r, nil
}

// createResultValue stores the final record's value, for ttl when it is
// positive (else for the bucket's TTL); false when the job already has one
// (this record is then not the job's result).
func createResultValue(ctx context.Context, kv KV, jobKey string, value []byte, ttl time.Duration) (bool, error) {
	var opts []jetstream.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, jetstream.KeyTTL(ttl))
	}
	_, err := kv.Create(ctx, jobKey, value, opts...)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store result %s: %w", jobKey, err)
	}
	return true, nil
}

func encodeJSON(v any) ([]byte, error) {
	b, err := model.EncodeCompact(v)
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(b, "\n"), nil
}
