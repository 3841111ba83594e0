package main

// The client side that enqueue and cancel share: their NATS flags, the
// protocol client, and the presentation of a followed job.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// clientFlagSet is the flag set of a client command with the NATS flags.
func (c *cli) clientFlagSet(name, usage string) (*flag.FlagSet, *natsConfig) {
	ncfg := defaultNATSConfig()
	// No state root unless given: then the daemon files and ./.pikaci
	// are searched (finddaemon.go).
	ncfg.StateRoot, ncfg.lookups = "", clientLookupsFrom(c.env, geteuid())
	ncfg.fromEnv(c.env)
	fs := c.flagSet(name, usage)
	ncfg.flags(fs, false)
	return fs, &ncfg
}

// clientReady validates the NATS flags and, without other credentials,
// takes those of the embedded server of the daemon on this host.
func (n *natsConfig) clientReady() error {
	if err := n.Validate(false); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return n.useStateCredentials()
}

// dialClient connects to the daemons' NATS server as the client command
// name; closeConn closes the connection.
func (n natsConfig) dialClient(name string) (client *protocol.Client, closeConn func(), err error) {
	nc, _, err := n.connect(n.clientURL(), name, zap.NewNop())
	if err != nil {
		return nil, nil, err
	}
	if client, err = protocol.NewClient(nc); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return client, nc.Close, nil
}

// jobView shows a followed daemon job: status lines, or (jsonl) the
// lifecycle events themselves, ending with the final run_finished.
type jobView struct {
	out   io.Writer
	jsonl bool
	notes io.Writer // jsonl: where notes go instead of out
	name  string    // the command, named before each note on notes
}

func (v jobView) printf(format string, a ...any) { fmt.Fprintf(v.out, format, a...) }

// note prints a line about the job: on out with the status lines, on
// notes in jsonl mode, where out carries only events.
func (v jobView) note(format string, a ...any) {
	if v.jsonl {
		fmt.Fprintf(v.notes, "jerichoci "+v.name+": "+format, a...)
		return
	}
	v.printf(format, a...)
}

// await shows the job's events until its final record, shows the record
// and returns it; it gives up after timeout (0: no limit).
func (v jobView) await(ctx context.Context, w *protocol.Watch, timeout time.Duration) (model.RunRecord, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for {
		u, err := w.Next(ctx)
		if err != nil {
			return model.RunRecord{}, err
		}
		if u.Record != nil {
			v.final(*u.Record)
			return *u.Record, nil
		}
		v.show(u.Event)
	}
}

// show prints one event as a status line.
func (v jobView) show(ev *protocol.Event) {
	if v.jsonl {
		// The final run_finished is printed from the final record.
		if ev.Event != model.EventRunFinished || !ev.Final {
			v.printf("%s\n", ev.Data)
		}
		return
	}
	switch ev.Event {
	case model.EventRunStarted:
		v.printf("run %s: %s started\n", ev.RunID, model.Value(ev.TargetID))
	case model.EventJobStarted:
		v.printf("  %-8s %s\n", "running", ev.Job.ID)
	case model.EventJobFinished:
		took := time.Duration(0)
		if ev.Job.FinishedAt != nil {
			took = ev.Job.FinishedAt.Sub(ev.Job.StartedAt.Time)
		}
		v.printf("  %-8s %s (%s) %s\n", ev.Job.Status, ev.Job.ID, roundDuration(took), model.Value(ev.Job.Message))
	case model.EventRunFinished:
		if !ev.Final {
			v.printf("run %s: %s, not the job's result: %s\n", ev.Run.RunID, ev.Run.Status, model.Value(ev.Run.Message))
		}
	}
}

// final prints the job's result: a summary, or its run_finished event.
func (v jobView) final(rec model.RunRecord) {
	if !v.jsonl {
		v.printf("%s\n", summary(rec))
		return
	}
	if b, err := model.EncodeCompact(model.RunFinishedEvent(rec)); err == nil {
		v.printf("%s", b)
	}
}
