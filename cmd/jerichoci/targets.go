package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"jerichoci/targets"
)

// envCatalog names a project catalog file; --catalog wins over it.
const envCatalog = "JERICHOCI_CATALOG"

// catalogFlagHelp is the help of every command's --catalog flag.
const catalogFlagHelp = "project catalog `FILE` merged over the built-in catalog (default $" + envCatalog + " or ./" + targets.DefaultFile + ")"

const catalogHelp = `The catalog is the built-in one (the original pikaci's targets and lanes)
with a project catalog file merged over it: --catalog FILE, else $` + envCatalog + `,
else ./` + targets.DefaultFile + ` when it exists. docs/CATALOG.md describes it.`

// subcommand is a subcommand of a group such as `targets`, `lanes` or `runs`.
type subcommand struct {
	name, summary string
	run           func(c *cli, args []string) int
}

// runGroup dispatches `jerichoci GROUP SUB [ARGS]`; note ends the group's
// help.
func (c *cli) runGroup(group, note string, args []string, subs []subcommand) int {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "usage: jerichoci %s COMMAND [FLAGS] [ARGS]\n\ncommands:\n", group)
		for _, s := range subs {
			fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nrun 'jerichoci %s COMMAND --help' for a command's flags.\n\n%s\n", group, note)
	}
	if len(args) == 0 {
		fmt.Fprintf(c.stderr, "jerichoci %s: missing command\n", group)
		usage(c.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(c.stdout)
		return exitOK
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(c, args[1:])
		}
	}
	fmt.Fprintf(c.stderr, "jerichoci %s: unknown command %q\n", group, args[0])
	usage(c.stderr)
	return exitUsage
}

// loadCatalog returns the catalog the commands work on (see catalogHelp).
func (c *cli) loadCatalog(flagPath string) (*targets.Catalog, error) {
	path := flagPath
	if path == "" && c.env != nil {
		if v, ok := c.env(envCatalog); ok && strings.TrimSpace(v) != "" {
			path = v
		}
	}
	if path == "" {
		if _, err := os.Stat(targets.DefaultFile); err == nil {
			path = targets.DefaultFile
		}
	}
	if path == "" {
		return targets.Builtin(), nil
	}
	return targets.LoadProject(path)
}

// catalogList registers the catalog flags, takes no positional argument
// and loads the catalog (none with --daemon): what every catalog list
// command starts with. done means return code at once.
func (c *cli) catalogList(fs *flag.FlagSet, args []string, ncfg *natsConfig) (cat *targets.Catalog, f catalogFlags, code int, done bool) {
	f.register(fs)
	f.registerDaemon(fs, ncfg)
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return nil, f, code, true
	}
	if len(pos) > 0 {
		return nil, f, c.usageErr(fs, "unexpected argument %q", pos[0]), true
	}
	if f.daemon {
		if f.catalog != "" {
			return nil, f, c.usageErr(fs, "--daemon lists the daemon's catalog: --catalog does not go with it"), true
		}
		return nil, f, 0, false
	}
	cat, err := c.loadCatalog(f.catalog)
	if err != nil {
		return nil, f, c.fail(exitUsage, "%v", err), true
	}
	return cat, f, 0, false
}

// catalogFlags are the flags every catalog command takes.
type catalogFlags struct {
	catalog string
	json    bool
	// daemon (list commands, registerDaemon) asks the daemon for its
	// catalog over NATS instead of loading one.
	daemon bool
	nats   *natsConfig
}

func (f *catalogFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.catalog, "catalog", "", catalogFlagHelp)
	fs.BoolVar(&f.json, "json", false, "print JSON")
}

func runTargets(_ context.Context, c *cli, args []string) int {
	return c.runGroup("targets", catalogHelp, args, []subcommand{
		{"list", "list every target: id, job count, description", runTargetsList},
		{"show", "show one target (by id or lane title) and its jobs", runTargetsShow},
	})
}

func runTargetsList(c *cli, args []string) int {
	fs, ncfg := c.clientFlagSet("targets list", "targets list [--catalog FILE | --daemon [nats flags]] [--json]")
	cat, f, code, done := c.catalogList(fs, args, ncfg)
	if done {
		return code
	}
	if f.daemon {
		return c.listDaemonTargets(f)
	}
	ts := cat.Targets()
	if f.json {
		type row struct {
			ID          string          `json:"id"`
			Description string          `json:"description"`
			Lane        string          `json:"lane,omitempty"`
			Trigger     targets.Trigger `json:"trigger,omitempty"`
			Jobs        int             `json:"jobs"`
			Source      string          `json:"source"`
		}
		rows := make([]row, len(ts))
		for i, t := range ts {
			rows[i] = row{t.ID, t.Description, t.Lane, t.Trigger, len(t.Jobs), t.Source}
		}
		return c.printJSON(rows)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARGET\tJOBS\tDESCRIPTION")
	for _, t := range ts {
		fmt.Fprintf(w, "%s\t%d\t%s\n", t.ID, len(t.Jobs), t.Description)
	}
	w.Flush()
	return exitOK
}

func runTargetsShow(c *cli, args []string) int {
	fs := c.flagSet("targets show", "targets show [--catalog FILE] [--json] ID|LANE")
	var f catalogFlags
	f.register(fs)
	pos, code, done := c.parseArgs(fs, args)
	if done {
		return code
	}
	switch {
	case len(pos) == 0:
		return c.usageErr(fs, "missing target id or lane title")
	case len(pos) > 1:
		return c.usageErr(fs, "unexpected argument %q", pos[1])
	}
	cat, err := c.loadCatalog(f.catalog)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	t, err := cat.Resolve(pos[0])
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if f.json {
		type job struct {
			targets.Job
			CompiledCommand string `json:"compiled_command"`
		}
		out := struct {
			targets.Target
			Source string `json:"source"`
			Jobs   []job  `json:"jobs"`
		}{Target: t, Source: t.Source}
		for _, j := range t.Jobs {
			out.Jobs = append(out.Jobs, job{Job: j, CompiledCommand: compiled(j)})
		}
		return c.printJSON(out)
	}
	w := c.stdout
	fmt.Fprintf(w, "target       %s\n", t.ID)
	fmt.Fprintf(w, "description  %s\n", t.Description)
	if t.Lane != "" {
		group := t.ConcurrencyGroup
		if group == "" {
			group = "none"
		}
		fmt.Fprintf(w, "lane         %s (trigger %s, concurrency group %s)\n", t.Lane, t.Trigger, group)
	} else {
		fmt.Fprintf(w, "lane         none (runs only when asked for)\n")
	}
	fmt.Fprintf(w, "source       %s\n", t.Source)
	fmt.Fprintf(w, "filters      %d\n", len(t.Filters))
	for _, p := range t.Filters {
		fmt.Fprintf(w, "  %s\n", p)
	}
	fmt.Fprintf(w, "jobs         %d\n", len(t.Jobs))
	for _, j := range t.Jobs {
		fmt.Fprintf(w, "\njob %s\n", j.ID)
		if j.Description != "" {
			fmt.Fprintf(w, "  description  %s\n", j.Description)
		}
		fmt.Fprintf(w, "  timeout      %ds\n", j.TimeoutSecs)
		fmt.Fprintf(w, "  command      %s\n", compiled(j))
		fmt.Fprintf(w, "  run as root  %t\n", j.RunAsRoot)
		rt := string(j.Runtime.Kind)
		if in := j.Runtime.Incus; in != nil {
			rt += fmt.Sprintf(", guest role %s, instance type %s", in.GuestRole, in.InstanceType)
		}
		fmt.Fprintf(w, "  runtime      %s\n", rt)
		fmt.Fprintf(w, "  placement    %s (executor %s)\n", j.Placement, j.Executor)
		if s := j.StagedLinux; s != nil {
			fmt.Fprintf(w, "  staged       prepare node prefix %s, snapshot profile %s\n", s.PrepareNodePrefix, s.SnapshotProfile)
			fmt.Fprintf(w, "               outputs %s, %s\n", s.WorkspaceDepsOutput, s.WorkspaceBuildOutput)
			if s.PrepareDescription != "" {
				fmt.Fprintf(w, "               prepared for %s\n", s.PrepareDescription)
			}
		} else {
			fmt.Fprintf(w, "  staged       %t\n", j.Staged)
		}
		fmt.Fprintf(w, "  writable     %t\n", j.Writable)
	}
	return exitOK
}

// compiled is a job's command as the guest request (or host) gets it.
func compiled(j targets.Job) string {
	cmd, _, err := j.Command.Compile()
	if err != nil { // a parsed catalog's commands compile; keep the reason visible anyway
		return "<" + err.Error() + ">"
	}
	return cmd
}

func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(exitUsage, "write JSON: %v", err)
	}
	return exitOK
}
