package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// sourceDir makes the --source of run and enqueue absolute and checks that
// it is a directory: a missing or wrong path is bad input (exit 2), named
// with the path, before anything runs or is queued.
func sourceDir(source string) (string, error) {
	src, err := filepath.Abs(source)
	if err != nil {
		return "", fmt.Errorf("--source %q: %w", source, err)
	}
	fi, err := os.Stat(src)
	switch {
	case os.IsNotExist(err):
		return "", fmt.Errorf("--source %q: %s does not exist; expected the directory of the source tree", source, src)
	case err != nil:
		return "", fmt.Errorf("--source %q: %w", source, err)
	case !fi.IsDir():
		return "", fmt.Errorf("--source %q: %s is not a directory; expected the directory of the source tree", source, src)
	}
	return src, nil
}
