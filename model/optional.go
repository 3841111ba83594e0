package model

// Value is what an optional field of a record holds: *p, or T's zero value
// when the field is absent (null in the JSON), so "" for an unset string.
func Value[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
