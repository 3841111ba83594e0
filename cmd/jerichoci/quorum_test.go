package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// silentStream stands for a JetStream stream of cluster (none: ""): the
// first hangs tries get no acknowledgement (they wait for their context),
// the next noStreams no responders, the later ones fail with fail or
// succeed. An upload reads its tarball in chunks, pausing
// pause before each.
type silentStream struct {
	cluster   string
	hangs     int
	noStreams int
	fail      error
	pause     time.Duration
	tries     int
	read      []byte
}

func (s *silentStream) answer(ctx context.Context) error {
	s.tries++
	if s.tries <= s.hangs {
		<-ctx.Done()
		return ctx.Err()
	}
	if s.tries <= s.hangs+s.noStreams {
		return fmt.Errorf("publish job: %w", jetstream.ErrNoStreamResponse)
	}
	return s.fail
}

func (s *silentStream) Cluster() string { return s.cluster }

func (s *silentStream) Enqueue(ctx context.Context, spec model.JobSpec) (protocol.EnqueueResult, error) {
	if err := s.answer(ctx); err != nil {
		return protocol.EnqueueResult{}, err
	}
	return protocol.EnqueueResult{Sequence: uint64(s.tries)}, nil
}

func (s *silentStream) UploadSource(ctx context.Context, tarball io.Reader, sha256hex, description string) (model.SourceRef, error) {
	s.read = nil
	buf := make([]byte, 4)
	for {
		select {
		case <-ctx.Done():
			return model.SourceRef{}, ctx.Err()
		case <-time.After(s.pause):
		}
		n, err := tarball.Read(buf)
		s.read = append(s.read, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return model.SourceRef{}, err
		}
	}
	if err := s.answer(ctx); err != nil {
		return model.SourceRef{}, err
	}
	return model.SourceRef{Kind: model.SourceObjectStore, Object: "o"}, nil
}

func TestEnqueueAndUploadWithoutAcknowledgement(t *testing.T) {
	saved := ackWait
	t.Cleanup(func() { ackWait = saved })
	refused := errors.New("nats: permissions violation")
	for _, tc := range []struct {
		name      string
		upload    bool
		stream    silentStream
		wantTries int // at least, without quorum (how many fit in the bound is timing)
		policy    ackPolicy
		wantErr   string // "" succeeds; else a part of the message
		noQuorum  bool
	}{
		{name: "acknowledged at once", stream: silentStream{}, wantTries: 1},
		{name: "an election: acknowledged on the third try", stream: silentStream{hangs: 2}, wantTries: 3,
			policy: ackPolicy{try: 100 * time.Millisecond, bound: 2 * time.Second}},
		{name: "no quorum: fails clearly", stream: silentStream{cluster: "jci", hangs: 100}, wantTries: 2, noQuorum: true,
			wantErr: `publish job 0f8fad5b-d9cb-469f-a165-70867728950e: the JetStream of NATS cluster "jci" acknowledged nothing in`},
		{name: "a single server that acknowledges nothing", stream: silentStream{hangs: 100}, wantTries: 2,
			wantErr: "publish job 0f8fad5b-d9cb-469f-a165-70867728950e: the NATS server's JetStream acknowledged nothing in"},
		{name: "a cluster: no responders, then acknowledged", stream: silentStream{cluster: "jci", noStreams: 2}, wantTries: 3,
			policy: ackPolicy{try: 50 * time.Millisecond, bound: 2 * time.Second}},
		{name: "a cluster: no responders, then nothing", stream: silentStream{cluster: "jci", hangs: 1, noStreams: 100}, wantTries: 2, noQuorum: true,
			wantErr: "or no daemon ever created it"},
		{name: "a single server: no responders is no stream", stream: silentStream{noStreams: 100}, wantTries: 1,
			wantErr: "no response from stream"},
		{name: "another error is not retried", stream: silentStream{fail: refused}, wantTries: 1, wantErr: "permissions violation"},
		{name: "upload acknowledged on the second try, from the start", upload: true, stream: silentStream{hangs: 1}, wantTries: 2,
			policy: ackPolicy{try: 100 * time.Millisecond, bound: 2 * time.Second}},
		{name: "upload without quorum", upload: true, stream: silentStream{cluster: "jci", hangs: 100}, wantTries: 2, noQuorum: true,
			wantErr: `upload source to jerichoci-sources: the JetStream of NATS cluster "jci" acknowledged nothing in`},
		// Each chunk comes well within a try, the whole upload takes
		// longer than one: it is progress, not silence.
		{name: "a slow upload that progresses", upload: true, stream: silentStream{pause: 100 * time.Millisecond}, wantTries: 1,
			policy: ackPolicy{try: 400 * time.Millisecond, bound: 400 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.stream
			ackWait = ackPolicy{try: 100 * time.Millisecond, bound: time.Second}
			if tc.policy.try != 0 {
				ackWait = tc.policy
			}
			tarball := []byte("0123456789abcdefghijklmnopqrstuvwxyz") // 9 reads of 4 bytes
			var err error
			if tc.upload {
				_, err = uploadAcked(t.Context(), &s, bytes.NewReader(tarball), strings.Repeat("a", 64), "d")
				if err == nil && !bytes.Equal(s.read, tarball) {
					t.Errorf("the last try uploaded %q, want the whole tarball %q", s.read, tarball)
				}
			} else {
				spec := model.JobSpec{JobID: uuid.MustParse("0f8fad5b-d9cb-469f-a165-70867728950e")}
				_, err = enqueueAcked(t.Context(), &s, spec)
			}
			if s.tries != tc.wantTries && !(s.hangs+s.noStreams >= 100 && s.tries > tc.wantTries) {
				t.Errorf("%d tries, want %d", s.tries, tc.wantTries)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if errors.Is(err, errNoQuorum) != tc.noQuorum {
				t.Errorf("errors.Is(%v, errNoQuorum) = %v, want %v", err, !tc.noQuorum, tc.noQuorum)
			}
			if tc.noQuorum && !strings.Contains(err.Error(), "lost its quorum") {
				t.Errorf("error %q does not say the cluster lost its quorum", err)
			}
			if tc.noQuorum && !tc.upload && !strings.Contains(err.Error(), "--job-id 0f8fad5b-d9cb-469f-a165-70867728950e") {
				t.Errorf("error %q does not say how to enqueue the job again", err)
			}
		})
	}
}

func TestEnqueueAckWaitEndsWithItsContext(t *testing.T) {
	saved := ackWait
	t.Cleanup(func() { ackWait = saved })
	ackWait = ackPolicy{try: time.Hour, bound: time.Hour}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	s := silentStream{hangs: 100}
	_, err := enqueueAcked(ctx, &s, model.JobSpec{JobID: uuid.New()})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errNoQuorum) || s.tries != 1 {
		t.Fatalf("after its context ended: %v in %d tries, want the context's end after 1 try", err, s.tries)
	}
}
