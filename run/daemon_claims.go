package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
)

// ClaimState is where a job stands in the jobs bucket.
type ClaimState string

// Claim states (docs/PROTOCOL.md).
const (
	// ClaimRunning: a worker runs the job (run_id, worker); it refreshes the
	// claim every AckWait/3, so an old claim means a dead worker.
	ClaimRunning ClaimState = "running"
	// ClaimQueued: an attempt gave the job back to the queue (shutdown or
	// an infrastructure error); the next delivery takes it.
	ClaimQueued ClaimState = "queued"
	// ClaimCancelled: cancelled before any worker took it; the worker that
	// gets the message records it as cancelled without running it.
	ClaimCancelled ClaimState = "cancelled"
	// ClaimFinished: the final record is in the results bucket.
	ClaimFinished ClaimState = "finished"
)

// Claim is the value of jerichoci-jobs.<job_id>: the fence that keeps a
// redelivered or republished job from running twice.
type Claim struct {
	JobID           string          `json:"job_id"`
	State           ClaimState      `json:"state"`
	RunID           string          `json:"run_id"`           // the current (or last) attempt's run
	Worker          string          `json:"worker"`           // the worker of that attempt
	Attempt         uint64          `json:"attempt"`          // the delivery that started it
	Status          model.RunStatus `json:"status,omitempty"` // finished: the final run status
	CancelRequested bool            `json:"cancel_requested"`
	UpdatedAt       model.Timestamp `json:"updated_at"`
}

// claimEntry is a claim with its revision, for compare-and-swap.
type claimEntry struct {
	Claim
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
	var c Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("claim %s: %w", jobID, err)
	}
	return &claimEntry{Claim: c, rev: e.Revision(), written: e.Created()}, nil
}

// createClaim writes a claim only if the job has none; errClaimConflict if
// it has.
func createClaim(ctx context.Context, kv KV, c Claim, opts ...jetstream.KVCreateOpt) (*claimEntry, error) {
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
func updateClaim(ctx context.Context, kv KV, c Claim, prev uint64) (*claimEntry, error) {
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

// createResultValue stores the final record's value; false when the job
// already has one (this record is then not the job's result).
func createResultValue(ctx context.Context, kv KV, jobKey string, value []byte) (bool, error) {
	_, err := kv.Create(ctx, jobKey, value)
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
