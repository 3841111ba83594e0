package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time: -ldflags "-X main.version=…".
var version = "dev"

func runVersion(_ context.Context, c *cli, args []string) int {
	fs := c.flagSet("version", "version")
	if code, done := c.parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return c.usageErr(fs, "unexpected argument %q", fs.Arg(0))
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(c.stdout, "jerichoci %s", version)
	if rev != "" {
		fmt.Fprintf(c.stdout, " (%s)", rev)
	}
	fmt.Fprintf(c.stdout, " %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
