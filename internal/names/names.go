// Package names is the project's one rule for a name that also becomes a
// path element or a key: job ids, target ids, lane titles, run ids in a
// URL. Such a name is never ".", "..", a path or a hidden name. It is a
// leaf: the standard library only.
package names

import "regexp"

// Expected says what Valid takes, for error messages.
const Expected = "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"

var pattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Valid reports whether s is a name: 1 to 128 letters, digits, '.', '_'
// or '-', starting with a letter or digit.
func Valid(s string) bool { return pattern.MatchString(s) }
