package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"jerichoci/run/protocol"
)

// registerDaemon adds --daemon to a list command, which then asks the
// daemon with the NATS flags of ncfg.
func (f *catalogFlags) registerDaemon(fs *flag.FlagSet, ncfg *natsConfig) {
	f.nats = ncfg
	fs.BoolVar(&f.daemon, "daemon", false, "list the running daemon's catalog (asked over NATS, as enqueue asks it) instead of a local one; a job's source may add lanes to it with its own "+
		"jerichoci.lanes.json")
}

// daemonCatalog asks the daemon for its catalog.
func (c *cli) daemonCatalog(f catalogFlags, name string) (protocol.CatalogReply, int, bool) {
	if err := f.nats.clientReady(); err != nil {
		return protocol.CatalogReply{}, c.fail(exitUsage, "%v", err), true
	}
	client, closeConn, err := f.nats.dialClient("jerichoci " + name)
	if err != nil {
		return protocol.CatalogReply{}, c.fail(exitUsage, "%v", err), true
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := client.Catalog(ctx)
	if err != nil {
		return protocol.CatalogReply{}, c.fail(exitUsage, "%v", err), true
	}
	return rep, 0, false
}

func (c *cli) listDaemonTargets(f catalogFlags) int {
	rep, code, done := c.daemonCatalog(f, "targets list")
	if done {
		return code
	}
	if f.json {
		return c.printJSON(rep.Targets)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARGET\tJOBS\tDESCRIPTION")
	for _, t := range rep.Targets {
		fmt.Fprintf(w, "%s\t%d\t%s\n", t.ID, t.Jobs, t.Description)
	}
	w.Flush()
	return exitOK
}

func (c *cli) listDaemonLanes(f catalogFlags) int {
	rep, code, done := c.daemonCatalog(f, "lanes list")
	if done {
		return code
	}
	// Branch lanes first, then nightly ones, as lanes.FromCatalog orders them.
	var all []laneJSON
	for _, trigger := range []string{"branch", "nightly"} {
		for _, t := range rep.Targets {
			if t.Lane == "" || t.Trigger != trigger {
				continue
			}
			var group *string
			if t.ConcurrencyGroup != "" {
				g := t.ConcurrencyGroup
				group = &g
			}
			l := laneJSON{Lane: t.Lane, TargetID: t.ID, Trigger: t.Trigger, ConcurrencyGroup: group, Jobs: t.Jobs,
				PathFilters: []string{}, Paths: append([]string{}, t.Paths...),
				Command: []string{"nix", "run", ".#pikaci", "--", "run", t.ID}}
			if trigger == "branch" {
				l.PathFilters = append(l.PathFilters, t.Filters...)
			}
			all = append(all, l)
		}
	}
	if f.json {
		if all == nil {
			all = []laneJSON{}
		}
		return c.printJSON(all)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LANE\tTARGET\tTRIGGER\tJOBS\tCONCURRENCY GROUP")
	for _, l := range all {
		group := "-"
		if l.ConcurrencyGroup != nil {
			group = *l.ConcurrencyGroup
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", l.Lane, l.TargetID, l.Trigger, l.Jobs, group)
	}
	w.Flush()
	return exitOK
}
