package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"jerichoci/lanes"
)

// lanesStdin is what `lanes select --changed-from -` reads; tests replace it.
var lanesStdin io.Reader = os.Stdin

func runLanes(_ context.Context, c *cli, args []string) int {
	return c.runGroup("lanes", catalogHelp, args, []subcommand{
		{"list", "list every lane: title, target id, trigger, job count, concurrency group", runLanesList},
		{"select", "print the titles of the branch lanes a set of changed files selects", runLanesSelect},
	})
}

// laneJSON is a lane as --json prints it.
type laneJSON struct {
	Lane             string   `json:"lane"`
	TargetID         string   `json:"target_id"`
	Trigger          string   `json:"trigger"`
	ConcurrencyGroup *string  `json:"concurrency_group"`
	Jobs             int      `json:"jobs"`
	PathFilters      []string `json:"path_filters"`
	Paths            []string `json:"paths"`
	Command          []string `json:"command"`
}

func lanesJSON(ls []lanes.Lane) []laneJSON {
	out := make([]laneJSON, len(ls))
	for i, l := range ls {
		var group *string
		if l.ConcurrencyGroup != "" {
			g := l.ConcurrencyGroup
			group = &g
		}
		out[i] = laneJSON{l.Title, l.TargetID, string(l.Trigger), group, l.Jobs, l.PathFilters, l.Paths, l.Command}
	}
	return out
}

func runLanesList(c *cli, args []string) int {
	fs, ncfg := c.clientFlagSet("lanes list", "lanes list [--catalog FILE | --daemon [nats flags]] [--json]\n\n"+
		"Branch lanes first, in catalog order, then nightly lanes (run daily at 08:00 UTC).")
	cat, f, code, done := c.catalogList(fs, args, ncfg)
	if done {
		return code
	}
	if f.daemon {
		return c.listDaemonLanes(f)
	}
	all := lanes.FromCatalog(cat).All()
	if f.json {
		return c.printJSON(lanesJSON(all))
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LANE\tTARGET\tTRIGGER\tJOBS\tCONCURRENCY GROUP")
	for _, l := range all {
		group := l.ConcurrencyGroup
		if group == "" {
			group = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", l.Title, l.TargetID, l.Trigger, l.Jobs, group)
	}
	w.Flush()
	return exitOK
}

// changedFlag collects repeated --changed values.
type changedFlag []string

func (f *changedFlag) String() string { return strings.Join(*f, ",") }

func (f *changedFlag) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("empty path")
	}
	*f = append(*f, v)
	return nil
}

func runLanesSelect(c *cli, args []string) int {
	fs := c.flagSet("lanes select", "lanes select [--catalog FILE] [--json] [--changed FILE]... [--changed-from FILE|-] [FILE]...\n\n"+
		"Prints one selected lane title per line, in catalog order. Changed files come from\n"+
		"--changed, arguments and --changed-from (one path per line; - reads stdin). No\n"+
		"changed files at all selects every branch lane; nightly lanes are never selected.")
	var f catalogFlags
	f.register(fs)
	var changed changedFlag
	fs.Var(&changed, "changed", "a changed `FILE`, relative to the repository root (repeatable)")
	from := fs.String("changed-from", "", "read changed files from `FILE`, one per line (- for stdin)")
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	for _, p := range pos {
		if err := changed.Set(p); err != nil {
			return c.usageErr(fs, "argument %q: %v", p, err)
		}
	}
	if *from != "" {
		more, err := readChangedFiles(*from)
		if err != nil {
			return c.fail(exitUsage, "--changed-from: %v", err)
		}
		changed = append(changed, more...)
	}
	cat, err := c.loadCatalog(f.catalog)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	selected := lanes.FromCatalog(cat).Select(changed)
	if f.json {
		return c.printJSON(lanesJSON(selected))
	}
	for _, l := range selected {
		fmt.Fprintln(c.stdout, l.Title)
	}
	return exitOK
}

// readChangedFiles reads newline-separated paths, skipping blank lines and
// trimming surrounding white space (and CRs).
func readChangedFiles(name string) ([]string, error) {
	r := lanesStdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}
