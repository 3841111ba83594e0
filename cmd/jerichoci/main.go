// Command jerichoci is a CI executor: it runs lanes in throwaway Incus
// instances, locally or as a daemon fed by NATS JetStream.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"jerichoci/internal/termsafe"
)

// Exit codes scripts can rely on.
const (
	exitOK     = 0
	exitFailed = 1 // the run (or lane) ended failed
	exitUsage  = 2 // bad command line, bad input or infrastructure error
	// exitInterrupted: a run stopped by SIGINT/SIGTERM (128 + SIGINT, as shells do).
	exitInterrupted = 130
)

// cli carries what every subcommand needs; tests build one with buffers.
type cli struct {
	stdout io.Writer
	stderr io.Writer
	env    func(string) (string, bool)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&cli{stdout: os.Stdout, stderr: os.Stderr, env: os.LookupEnv}).main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// main runs the command in args. Everything it prints goes through a
// termsafe.Writer: a job's output, a record's message or a file name from
// a source cannot drive the reader's terminal (docs/SECURITY.md).
func (c *cli) main(ctx context.Context, args []string) int {
	stdout, stderr := termsafe.NewWriter(c.stdout), termsafe.NewWriter(c.stderr)
	c.stdout, c.stderr = stdout, stderr
	defer stderr.Flush() //nolint:errcheck // nowhere left to report it
	defer stdout.Flush() //nolint:errcheck
	args, code, done := c.globalFlags(args)
	if done {
		return code
	}
	if len(args) == 0 {
		c.usage(c.stderr)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		c.usage(c.stdout)
		return exitOK
	}
	cmd, ok := lookupCommand(name)
	if !ok {
		fmt.Fprintf(c.stderr, "jerichoci: unknown command %q\n\n", name)
		c.usage(c.stderr)
		return exitUsage
	}
	// As the original, every command refuses a removed variable; --help
	// still answers.
	if err := removedEnv(c.env); err != nil && !helpAsked(args[1:]) {
		return c.fail(exitUsage, "%v", err)
	}
	return cmd.run(ctx, c, args[1:])
}

// helpAsked reports a -h or --help among a command's flags.
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// globalFlags takes the options given before the subcommand, as pikaci's
// global `--state-root DIR` (also `--state-root=DIR`): it becomes the
// default state root of every subcommand that has one, the way
// $PIKACI_STATE_ROOT is (a subcommand's own --state-root still wins).
func (c *cli) globalFlags(args []string) (rest []string, code int, done bool) {
	for len(args) > 0 {
		name, value, hasValue := strings.Cut(args[0], "=")
		if name != "--state-root" && name != "-state-root" {
			break
		}
		args = args[1:]
		if !hasValue {
			if len(args) == 0 {
				fmt.Fprintf(c.stderr, "jerichoci: %s needs a DIR\n\n", name)
				c.usage(c.stderr)
				return nil, exitUsage, true
			}
			value, args = args[0], args[1:]
		}
		if value == "" {
			fmt.Fprintf(c.stderr, "jerichoci: %s: expected a directory path, got \"\"\n", name)
			return nil, exitUsage, true
		}
		c.env = withStateRoot(c.env, value)
	}
	return args, 0, false
}

// withStateRoot is env with PIKACI_STATE_ROOT set to root.
func withStateRoot(env func(string) (string, bool), root string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		if k == envStateRoot {
			return root, true
		}
		if env == nil {
			return "", false
		}
		return env(k)
	}
}

// envStateRoot is the environment variable of the default state root.
const envStateRoot = "PIKACI_STATE_ROOT"

func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, "usage: jerichoci [--state-root DIR] COMMAND [ARGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	cmds := commandTable()
	width := 0
	for _, cmd := range cmds {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "--state-root DIR before the command is the state root of every command that")
	fmt.Fprintln(w, "has one (as $PIKACI_STATE_ROOT; the command's own --state-root wins).")
	fmt.Fprintln(w, "run 'jerichoci COMMAND --help' for a command's flags.")
}

// flagSet returns a FlagSet that prints its usage to the right stream and
// never exits the process.
func (c *cli) flagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: jerichoci %s\n", usage)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses flags; done is true when the caller must return code at once
// (--help prints the usage on stdout and gives 0; a bad flag prints the
// problem and the usage on stderr and gives 2). The flag package itself
// prints nothing, so nothing is shown twice.
func (c *cli) parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if err == nil {
		return 0, false
	}
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.stdout)
		fs.Usage()
		return exitOK, true
	}
	fs.SetOutput(c.stderr)
	fmt.Fprintf(c.stderr, "jerichoci %s: %v\n", fs.Name(), err)
	fs.Usage()
	return exitUsage, true
}

// parseLaneArgs parses the one LANE|TARGET argument of run and enqueue and
// checks their --output flag against formats (default: text or jsonl).
func (c *cli) parseLaneArgs(fs *flag.FlagSet, args []string, output *string, formats ...string) (name string, code int, done bool) {
	pos, code, done := c.parseArgs(fs, args)
	switch {
	case done:
		return "", code, true
	case len(pos) != 1:
		return "", c.usageErr(fs, "expected exactly one LANE or TARGET, got %d arguments", len(pos)), true
	}
	if code, done := c.checkOutput(fs, *output, formats...); done {
		return "", code, true
	}
	return pos[0], 0, false
}

// checkOutput checks an --output value against formats (default: text or jsonl).
func (c *cli) checkOutput(fs *flag.FlagSet, output string, formats ...string) (code int, done bool) {
	if len(formats) == 0 {
		formats = []string{"text", "jsonl"}
	}
	if slices.Contains(formats, output) {
		return 0, false
	}
	list := strings.Join(formats[:len(formats)-1], ", ") + " or " + formats[len(formats)-1]
	return c.usageErr(fs, "--output: expected %s, got %q", list, output), true
}

// parseArgs parses flags that may come before or after positional
// arguments ("show ID --json"); everything after "--" is positional.
func (c *cli) parseArgs(fs *flag.FlagSet, args []string) (pos []string, code int, done bool) {
	for {
		if code, done := c.parse(fs, args); done {
			return nil, code, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, false
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageErr prints a usage error for a subcommand and returns exit code 2.
func (c *cli) usageErr(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(c.stderr, "jerichoci %s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return exitUsage
}

// fail prints an error and returns the given code.
func (c *cli) fail(code int, format string, a ...any) int {
	msg := fmt.Sprintf(format, a...)
	fmt.Fprintf(c.stderr, "jerichoci: %s\n", strings.TrimRight(msg, "\n"))
	return code
}
