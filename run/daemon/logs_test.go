package daemon

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"jerichoci/run/protocol"
)

type recordingPub struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (p *recordingPub) Publish(_ context.Context, subject string, data []byte, h nats.Header) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, &nats.Msg{Subject: subject, Data: data, Header: h})
	return nil
}

func (p *recordingPub) all() []*nats.Msg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*nats.Msg(nil), p.msgs...)
}

func TestLogChunker(t *testing.T) {
	pub := &recordingPub{}
	c := newLogChunker(pub, "job-1", "run-1", "my.job", zap.NewNop())
	big := bytes.Repeat([]byte("x"), logChunkBytes+10)
	c.Write([]byte("first line\n"))
	// A partial chunk goes out on its own, within logChunkEvery.
	for deadline := time.Now().Add(30 * time.Second); len(pub.all()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the partial chunk was never sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Write(big) // one full chunk at once, 10 bytes held
	c.Write([]byte("tail"))
	c.Close()
	c.Write([]byte("after close")) // dropped
	msgs := pub.all()
	var all []byte
	for i, m := range msgs {
		if m.Subject != "jerichoci.logs.job-1.run-1.my_job" || m.Header.Get(protocol.HeaderJobID) != "job-1" ||
			m.Header.Get(protocol.HeaderRunID) != "run-1" || m.Header.Get(protocol.HeaderLogSeq) != strconv.Itoa(i+1) {
			t.Errorf("chunk %d: %s %v", i, m.Subject, m.Header)
		}
		if len(m.Data) > logChunkBytes {
			t.Errorf("chunk %d has %d bytes", i, len(m.Data))
		}
		all = append(all, m.Data...)
	}
	if want := "first line\n" + string(big) + "tail"; string(all) != want {
		t.Errorf("chunks hold %d bytes, want %d (%q…)", len(all), len(want), strings.TrimSpace(string(all[:min(len(all), 20)])))
	}
	// The first line, one full chunk, and the rest (at close, or by the
	// timer if the host stalled): never fewer.
	if len(msgs) < 3 || len(msgs[1].Data) != logChunkBytes {
		t.Errorf("%d chunks, the second of %d bytes; want the first line, then a full chunk", len(msgs), len(msgs[1].Data))
	}
}
