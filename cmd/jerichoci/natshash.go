package main

import (
	"fmt"
	"strconv"

	"golang.org/x/crypto/bcrypt"
)

// hashedPassword is the configuration text of a password the embedded
// server checks against its bcrypt hash, so that its configuration holds
// no plaintext (and nats-server does not warn "Plaintext passwords
// detected" about the users serve generated itself). The passwords are 32
// random bytes, which no cost factor could make easier or harder to guess:
// the lowest cost keeps each connection's check cheap.
func hashedPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return "", fmt.Errorf("nats credentials: hash a password: %w", err)
	}
	return strconv.Quote(string(h)), nil // quoted: no $variable in nats-server's syntax
}
