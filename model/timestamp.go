package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Timestamp is a point in time that serializes as the original executor does:
// UTC, `+00:00` (never `Z`), and a fraction of 0, 3, 6 or 9 digits, the
// shortest that keeps every nanosecond. Reading accepts any RFC 3339 offset.
type Timestamp struct{ time.Time }

// At wraps t as a Timestamp.
func At(t time.Time) Timestamp { return Timestamp{t} }

// TimestampPtr returns a pointer to At(t), for nullable fields.
func TimestampPtr(t time.Time) *Timestamp { ts := At(t); return &ts }

// FormatTimestamp renders t in the record format.
func FormatTimestamp(t time.Time) string {
	t = t.UTC()
	b := make([]byte, 0, 36)
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	ns := t.Nanosecond()
	switch {
	case ns == 0:
	case ns%1_000_000 == 0:
		b = fmt.Appendf(b, ".%03d", ns/1_000_000)
	case ns%1_000 == 0:
		b = fmt.Appendf(b, ".%06d", ns/1_000)
	default:
		b = fmt.Appendf(b, ".%09d", ns)
	}
	return string(append(b, "+00:00"...))
}

// ParseTimestamp reads an RFC 3339 time with any offset and returns it in UTC.
// The time must fall in the years 0000 to 9999 in UTC, which the record
// format can write: "0000-01-01T00:00:00+01:00" is in year -1 in UTC.
func ParseTimestamp(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("expected an RFC 3339 timestamp, got %s", strconv.Quote(s))
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("expected an RFC 3339 timestamp in the years 0000 to 9999 in UTC, got %s (year %d in UTC)", strconv.Quote(s), y)
	}
	return t, nil
}

// String renders the timestamp in the record format.
func (t Timestamp) String() string { return FormatTimestamp(t.Time) }

// MarshalJSON writes the record format.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + FormatTimestamp(t.Time) + `"`), nil
}

// UnmarshalJSON reads any RFC 3339 timestamp string.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return fmt.Errorf("expected a timestamp, got null")
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a timestamp string, got %s", b)
	}
	v, err := ParseTimestamp(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}
