package wording

import "testing"

func TestSuggest(t *testing.T) {
	names := []string{"demo-pass", "demo-fail", "check-pika-rust", "check-pika-followup", "pika-rust", "ab"}
	tests := []struct {
		name, typed string
		candidates  []string
		want        string
	}{
		{"one letter missing", "demo-pas", names, "demo-pass"},
		{"one letter extra", "demo-passs", names, "demo-pass"},
		{"one letter changed", "demo-pasz", names, "demo-pass"},
		{"two letters swapped", "demo-psas", names, "demo-pass"},
		{"a lane title with a typo", "check-pika-rsut", names, "check-pika-rust"},
		{"a lane title missing its prefix is too far", "pika-followup", names, ""},
		{"the target of a lane title", "pika-rustt", names, "pika-rust"},
		{"nothing close", "nope", names, ""},
		{"short names allow one edit", "ac", names, "ab"},
		{"short names allow no more", "xy", names, ""},
		{"three edits at most, even when long", "check-pika-folowupxxx", names, ""},
		{"the closest wins", "demo-fai", names, "demo-fail"},
		{"ties go to the earlier candidate", "demo-fass", names, "demo-pass"},
		{"the name itself is not suggested", "demo-pass", []string{"demo-pass"}, ""},
		{"no candidates", "demo-pas", nil, ""},
		{"empty name", "", names, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Suggest(tc.typed, tc.candidates); got != tc.want {
				t.Errorf("Suggest(%q) = %q, want %q", tc.typed, got, tc.want)
			}
		})
	}
}

func TestDidYouMean(t *testing.T) {
	tests := []struct{ typed, want string }{
		{"demo-pas", "did you mean `demo-pass`?"},
		{"nope", ""},
	}
	for _, tc := range tests {
		if got := DidYouMean(tc.typed, []string{"demo-pass"}); got != tc.want {
			t.Errorf("DidYouMean(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"ab", "ba", 1}, {"ca", "abc", 3}, {"demo-pas", "demo-pass", 1},
	}
	for _, tc := range tests {
		if got := editDistance(tc.a, tc.b, 100); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a, 100); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}
