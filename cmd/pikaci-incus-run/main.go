// Command pikaci-incus-run is the guest runner shipped in jerichoci's
// runner images: `pikaci-incus-run /run/pika-cloud/guest-request.json`.
// It must be built static (CGO_ENABLED=0): the image has no libc.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"jerichoci/guest"
)

func main() {
	args := os.Args[1:]
	r := &guest.Runner{}
	if len(args) == 2 && args[0] == "--wait-for-request" {
		r.WaitForRequest, args = true, args[1:]
	}
	if len(args) != 1 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: pikaci-incus-run [--wait-for-request] GUEST_REQUEST_JSON")
		os.Exit(2)
	}
	// SIGTERM (the executor's cancel or timeout, over the exec control
	// socket) ends the test command's whole process group, not only this
	// process: the command runs in a group of its own.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := r.Main(ctx, args[0])
	stop()
	os.Exit(code)
}
