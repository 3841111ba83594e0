// Command pikaci-incus-run is the guest runner shipped in jerichoci's
// runner images: `pikaci-incus-run /run/pika-cloud/guest-request.json`.
// It must be built static (CGO_ENABLED=0): the image has no libc.
package main

import (
	"context"
	"fmt"
	"os"

	"jerichoci/guest"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: pikaci-incus-run GUEST_REQUEST_JSON")
		os.Exit(2)
	}
	os.Exit((&guest.Runner{}).Main(context.Background(), os.Args[1]))
}
