package targets

import (
	"strings"
	"testing"
)

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"Cargo.toml", "Cargo.toml", true},
		{"Cargo.toml", "cli/Cargo.toml", false},
		{"Cargo.toml", "Cargo.toml.bak", false},
		{"rust/**", "rust", true}, // the prefix itself
		{"rust/**", "rust/src/lib.rs", true},
		{"rust/**", "rust/", true},
		{"rust/**", "rusty/lib.rs", false},
		{"rust/**", "src/rust/lib.rs", false},
		{"crates/pikaci/**", "crates/pikaci/src/targets.rs", true},
		{"crates/**/Cargo.toml", "crates/pika-tls/Cargo.toml", false}, // only literal
		{"crates/**/Cargo.toml", "crates/**/Cargo.toml", true},
		{"docs/*.md", "docs/a.md", false},
		{"**", "anything", false},
	}
	for _, tc := range tests {
		if got := MatchFilter(tc.pattern, tc.path); got != tc.want {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

func TestMatchesChanges(t *testing.T) {
	filtered := Target{Filters: []string{"rust/**", "Cargo.toml"}}
	tests := []struct {
		name    string
		target  Target
		changed []string
		want    bool
	}{
		{"no filters runs", Target{}, nil, true},
		{"no filters runs with changes", Target{}, []string{"x"}, true},
		{"filters, nothing changed", filtered, nil, false},
		{"filters, unrelated change", filtered, []string{"docs/a.md"}, false},
		{"filters, one match among many", filtered, []string{"docs/a.md", "rust/src/lib.rs"}, true},
		{"filters, exact match", filtered, []string{"Cargo.toml"}, true},
	}
	for _, tc := range tests {
		if got := tc.target.MatchesChanges(tc.changed); got != tc.want {
			t.Errorf("%s: MatchesChanges(%q) = %v, want %v", tc.name, tc.changed, got, tc.want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"Cargo.toml", []string{"Cargo.toml"}, []string{"cli/Cargo.toml", "Cargo.tomlx", "Cargo_toml"}},
		{"rust/**", []string{"rust/a", "rust/src/lib.rs", "rust/a/b/c/d"}, []string{"rust", "rusty/a", "x/rust/a"}},
		{"**", []string{"a", "a/b/c", ""}, nil},
		{"**/Cargo.toml", []string{"Cargo.toml", "cli/Cargo.toml", "a/b/Cargo.toml"}, []string{"Cargo.toml.bak", "aCargo.toml"}},
		{"crates/**/Cargo.toml", []string{"crates/Cargo.toml", "crates/pika-tls/Cargo.toml", "crates/a/b/Cargo.toml"},
			[]string{"crates/pika-tls/src/Cargo.toml.in", "cratesX/Cargo.toml", "crates/pika-tls/Cargo.lock"}},
		{"docs/*.md", []string{"docs/a.md", "docs/.md"}, []string{"docs/sub/a.md", "docs/a.mdx", "docs/a.txt"}},
		{"*", []string{"a", "Cargo.toml"}, []string{"a/b"}},
		{"a/*/c", []string{"a/b/c"}, []string{"a/c", "a/b/b/c"}},
		{"file?.txt", []string{"file1.txt", "fileé.txt"}, []string{"file.txt", "file12.txt", "file/.txt"}},
		{"[abc].rs", []string{"a.rs", "c.rs"}, []string{"d.rs", "ab.rs"}},
		{"[a-c]x", []string{"bx"}, []string{"dx", "-x"}},
		{"[!a-c]x", []string{"dx"}, []string{"ax", "/x"}},
		{"[^a]x", []string{"bx"}, []string{"ax"}},
		{"[]a]x", []string{"]x", "ax"}, []string{"bx"}},
		{"[a-]x", []string{"ax", "-x"}, []string{"bx"}},
		{"{src,docs}/**", []string{"src/a", "docs/b/c"}, []string{"lib/a"}},
		{"*.{md,txt}", []string{"a.md", "b.txt"}, []string{"c.rs", "d/a.md"}},
		{"a{b,{c,d}}e", []string{"abe", "ace", "ade"}, []string{"ae", "abce"}},
		{"a,b", []string{"a,b"}, []string{"a"}},
		{`\*.md`, []string{"*.md"}, []string{"a.md"}},
		{`a\[b`, []string{"a[b"}, []string{"ab"}},
		{"a.b+c(d)", []string{"a.b+c(d)"}, []string{"axb+c(d)"}},
		{"a}b", nil, nil}, // error case, see below
	}
	for _, tc := range tests {
		g, err := CompileGlob(tc.pattern)
		if tc.pattern == "a}b" {
			if err == nil {
				t.Errorf("CompileGlob(%q) succeeded", tc.pattern)
			}
			continue
		}
		if err != nil {
			t.Errorf("CompileGlob(%q): %v", tc.pattern, err)
			continue
		}
		if g.String() != tc.pattern {
			t.Errorf("String() = %q", g.String())
		}
		for _, p := range tc.match {
			if !g.Match(p) {
				t.Errorf("%q should match %q", tc.pattern, p)
			}
		}
		for _, p := range tc.noMatch {
			if g.Match(p) {
				t.Errorf("%q should not match %q", tc.pattern, p)
			}
		}
	}
}

func TestCompileGlobErrors(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"", "empty pattern"},
		{"a**", "`**` must be a whole path component (at offset 1)"},
		{"**a", "`**` must be a whole path component (at offset 0)"},
		{"a/**b/c", "`**` must be a whole path component (at offset 2)"},
		{"a[bc", "unclosed `[` (at offset 1)"},
		{"[]", "unclosed `[` (at offset 0)"},
		{"[z-a]", "invalid character class"},
		{"a\\", "trailing `\\` escapes nothing"},
		{"{a,b", "unclosed `{`"},
		{"a}", "unmatched `}` (at offset 1)"},
	}
	for _, tc := range tests {
		_, err := CompileGlob(tc.pattern)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CompileGlob(%q) error = %v, want %q", tc.pattern, err, tc.want)
		}
	}
}
