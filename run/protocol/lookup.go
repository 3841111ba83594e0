package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"jerichoci/model"
)

// SubjectLookupPrefix + "<job_id>" asks the daemons where a job stands
// (docs/PROTOCOL.md): request/reply, empty body, answered by one daemon
// with a LookupReply. Clients and readers may ask; it changes nothing.
const SubjectLookupPrefix = "jerichoci.lookup."

// ClaimUnknown is the state of a job id that no daemon knows: no claim, no
// final record, no message in the work stream. It is only ever a reply's
// state (lookups and cancels), never a claim's.
const ClaimUnknown ClaimState = "unknown"

// LookupReply answers a lookup: state is the job's claim state, queued
// for a job in the work stream that no worker has claimed yet, or
// unknown.
type LookupReply struct {
	JobID string     `json:"job_id"`
	State ClaimState `json:"state,omitempty"`
	RunID string     `json:"run_id,omitempty"`
	Error string     `json:"error,omitempty"`
}

// Lookup asks the daemons where the job stands. No daemon listening (or
// only daemons older than lookups) is an error wrapping ErrNoDaemon.
func (c *Client) Lookup(ctx context.Context, jobID string) (LookupReply, error) {
	var rep LookupReply
	if err := c.askDaemons(ctx, "look up", SubjectLookupPrefix, jobID, &rep); err != nil {
		return LookupReply{}, err
	}
	if rep.JobID != jobID {
		return LookupReply{}, fmt.Errorf("look up %s: the reply names job %q", jobID, rep.JobID)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("look up %s: %s", jobID, rep.Error)
	}
	return rep, nil
}

// askDaemons sends the daemons a request about jobID on prefix + jobID
// and decodes their JSON answer into reply; verb names the request in
// errors. No daemon listening is an error wrapping ErrNoDaemon.
func (c *Client) askDaemons(ctx context.Context, verb, prefix, jobID string, reply any) error {
	if _, err := model.ParseJobID(jobID); err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	subject := prefix + jobID
	m, err := c.nc.RequestWithContext(ctx, subject, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w on %s: is jerichoci serve running?", ErrNoDaemon, subject)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, jobID, err)
	}
	if err := json.Unmarshal(m.Data, reply); err != nil {
		return fmt.Errorf("%s %s: unreadable reply %q", verb, jobID, m.Data)
	}
	return nil
}
