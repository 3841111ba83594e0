package targets

import (
	"fmt"
	"regexp"
	"strings"
)

// MatchFilter reports whether a changed path matches one `pikaci run` filter
// (docs/CONTRACTS.md, "The original's catalog"). The run filter understands
// only an exact path or `prefix/**`, which matches prefix itself and
// anything under it; any other glob, such as `crates/**/Cargo.toml`, matches
// only literally.
func MatchFilter(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/**"); ok {
		return path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return path == pattern
}

// MatchesChanges reports whether `pikaci run` runs the target for these
// changed files: always when the target has no filters, otherwise when some
// changed path matches some filter (MatchFilter). With filters and no changed
// files the run is skipped.
func (t Target) MatchesChanges(changed []string) bool {
	if len(t.Filters) == 0 {
		return true
	}
	for _, p := range changed {
		for _, f := range t.Filters {
			if MatchFilter(f, p) {
				return true
			}
		}
	}
	return false
}

// Glob is a compiled path glob as used by forge lane selection (the
// original's globset patterns, with `*` kept inside one path component):
//
//   - `**` as a whole component matches any number of components: `**/x`
//     matches `x` and `a/b/x`; `a/**/x` matches `a/x` and `a/b/x`; `a/**`
//     matches everything under `a` (not `a` itself); `**` alone matches all.
//     `**` inside a component (`a**`) is an error.
//   - `*` matches any run of characters except `/`; `?` one character except `/`.
//   - `[abc]`, `[a-z]`, `[!abc]` / `[^abc]` match one character of a class
//     (a negated class never matches `/`).
//   - `{a,b}` matches either alternative (they may nest and hold globs).
//   - `\` makes the next character literal.
type Glob struct {
	pattern string
	re      *regexp.Regexp
}

// CompileGlob compiles pattern, or says what is wrong with it.
func CompileGlob(pattern string) (*Glob, error) {
	if pattern == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	var b strings.Builder
	b.WriteString("^")
	depth := 0 // open `{` groups
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*':
			if i+1 < len(pattern) && pattern[i+1] == '*' {
				end := i + 2
				if (i > 0 && pattern[i-1] != '/') || (end < len(pattern) && pattern[end] != '/') {
					return nil, fmt.Errorf("`**` must be a whole path component (at offset %d)", i)
				}
				if end == len(pattern) {
					b.WriteString(".*")
					i = end - 1
				} else {
					b.WriteString("(?:.*/)?")
					i = end // skip the `/` too
				}
				continue
			}
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '[':
			n, class, err := globClass(pattern[i:])
			if err != nil {
				return nil, fmt.Errorf("%v (at offset %d)", err, i)
			}
			b.WriteString(class)
			i += n - 1
		case '\\':
			if i+1 == len(pattern) {
				return nil, fmt.Errorf("trailing `\\` escapes nothing")
			}
			i++
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		case '{':
			depth++
			b.WriteString("(?:")
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("unmatched `}` (at offset %d)", i)
			}
			depth--
			b.WriteString(")")
		case ',':
			if depth > 0 {
				b.WriteString("|")
			} else {
				b.WriteString(",")
			}
		default:
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		}
	}
	if depth > 0 {
		return nil, fmt.Errorf("unclosed `{`")
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil { // e.g. a reversed range such as [z-a]
		return nil, fmt.Errorf("invalid character class: %v", err)
	}
	return &Glob{pattern: pattern, re: re}, nil
}

// globClass translates the character class at the start of s ("[...]"),
// returning how many bytes it used.
func globClass(s string) (int, string, error) {
	var b strings.Builder
	b.WriteString("[")
	i := 1
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		b.WriteString("^/") // a negated class never matches a separator either
		i++
	}
	start := i
	for ; i < len(s); i++ {
		c := s[i]
		if c == ']' && i > start { // a `]` first in the class is literal
			b.WriteString("]")
			return i + 1, b.String(), nil
		}
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteString(regexp.QuoteMeta(s[i : i+1]))
		case c == '-' && i > start && i+1 < len(s) && s[i+1] != ']':
			b.WriteString("-")
		case c == '[' || c == ']' || c == '\\' || c == '^' || c == '-':
			b.WriteString(`\` + string(c))
		default:
			b.WriteByte(c)
		}
	}
	return 0, "", fmt.Errorf("unclosed `[`")
}

// Match reports whether path matches the glob.
func (g *Glob) Match(path string) bool { return g.re.MatchString(path) }

// String returns the pattern as written.
func (g *Glob) String() string { return g.pattern }
