package main

import (
	"errors"
	"fmt"
)

// closers is a stack of what a command opened: close closes it in reverse
// order of opening and returns every error, each named after what failed
// to close.
type closers struct {
	stack []namedClose
	// watch, when set, is told of each named close as it starts; the
	// function it returns is called when that close ends (serve says what
	// a slow stop waits for: servestop.go).
	watch func(name string) (done func())
}

type namedClose struct {
	name string // "" for a close that reports nothing
	fn   func() error
}

// push adds the close of what was just opened.
func (s *closers) push(name string, fn func() error) {
	s.stack = append(s.stack, namedClose{name, fn})
}

// close runs every close, the last pushed first, and empties the stack.
func (s *closers) close() error {
	var errs []error
	for i := len(s.stack) - 1; i >= 0; i-- {
		c := s.stack[i]
		done := func() {}
		if s.watch != nil && c.name != "" {
			done = s.watch(c.name)
		}
		err := c.fn()
		done()
		if err != nil {
			if c.name != "" {
				err = fmt.Errorf("close %s: %w", c.name, err)
			}
			errs = append(errs, err)
		}
	}
	s.stack = nil
	return errors.Join(errs...)
}
