package daemon

import (
	"strings"
	"testing"
	"time"
)

// TestDeliveryValidatedOnce: the queue reports a bad Delivery, the daemon's
// own Validate leaves it to the queue (serve validates both, and must say
// it once), and Run refuses it.
func TestDeliveryValidatedOnce(t *testing.T) {
	tests := []struct {
		name string
		d    Delivery
		want []string // messages, each once; none = valid
	}{
		{name: "defaults", d: DefaultDelivery()},
		{name: "ack wait under 1s", d: Delivery{AckWait: 300 * time.Millisecond, MaxDeliver: 1}, want: []string{"ack wait 300ms: must be at least 1s"}},
		{name: "no delivery", d: Delivery{AckWait: time.Second}, want: []string{"max deliver 0: must be at least 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := DefaultQueueConfig()
			q.Delivery = tc.d
			d := DefaultDaemonConfig()
			d.ID, d.Delivery, d.Heartbeat = "test", tc.d, 100*time.Millisecond
			text := func(err error) string {
				if err == nil {
					return ""
				}
				return err.Error()
			}
			both := text(q.Validate()) + "\n" + text(d.Validate())
			for _, w := range tc.want {
				if n := strings.Count(both, w); n != 1 {
					t.Errorf("the queue's and the daemon's Validate say %q %d times, want once:\n%s", w, n, both)
				}
			}
			if len(tc.want) == 0 && strings.TrimSpace(both) != "" {
				t.Errorf("Validate = %s, want no error", both)
			}
			run := text((&Daemon{Config: d}).Run(t.Context())) // no queue: refused anyway, after the config
			for _, w := range tc.want {
				if !strings.Contains(run, w) {
					t.Errorf("Run = %s, want it refused with %q", run, w)
				}
			}
		})
	}
}
