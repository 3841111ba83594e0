package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// RecordStore keeps whole final records that are too large for a value of
// the results bucket (or for one NATS message).
type RecordStore interface {
	PutRecord(ctx context.Context, name string, data []byte) error
}

// defaultRecordLimit keeps a value clear of both the bucket's value limit
// and the default 1 MiB message limit, headers included.
const defaultRecordLimit = protocol.MaxResultValue - 16<<10

// compactRecord is the record as it is stored: compact JSON, no newline.
func compactRecord(rec model.RunRecord) ([]byte, error) {
	b, err := model.EncodeCompact(rec)
	if err != nil {
		return nil, fmt.Errorf("encode run record %s: %w", rec.RunID, err)
	}
	return bytes.TrimRight(b, "\n"), nil
}

// fitRecord returns rec's compact JSON when it is at most limit bytes;
// otherwise a trimmed copy that fits, carrying marker (with Trimmed and
// Bytes set): changed_files and filters are cut from the end, then long
// messages are shortened, then the job list goes. The status, the ids and
// the times are always kept.
func fitRecord(rec model.RunRecord, limit int, marker protocol.RecordMarker) ([]byte, bool, error) {
	full, err := compactRecord(rec)
	if err != nil {
		return nil, false, err
	}
	if len(full) <= limit {
		return full, false, nil
	}
	marker.Trimmed, marker.Bytes = true, len(full)
	mb, err := json.Marshal(marker)
	if err != nil {
		return nil, false, err
	}
	t := rec
	t.ChangedFiles = append([]string{}, rec.ChangedFiles...)
	t.Filters = append([]string{}, rec.Filters...)
	t.Jobs = append([]model.JobRecord{}, rec.Jobs...)
	steps := []func() bool{
		func() bool { return cut(&t.ChangedFiles) },
		func() bool { return cut(&t.Filters) },
		func() bool {
			changed := shorten(&t.Message)
			for i := range t.Jobs {
				changed = shorten(&t.Jobs[i].Message) || changed
			}
			return changed
		},
		func() bool { return cut(&t.Jobs) },
	}
	for _, step := range steps {
		for {
			b, err := compactRecord(t)
			if err != nil {
				return nil, false, err
			}
			if len(b)+len(mb)+len(protocol.RecordMarkerKey)+4 <= limit {
				return withMarker(b, mb), true, nil
			}
			if !step() {
				break
			}
		}
	}
	return nil, false, fmt.Errorf("run record %s: %d bytes, and still more than %d when trimmed", rec.RunID, len(full), limit)
}

// cut halves a list from the end; false when it is empty.
func cut[T any](xs *[]T) bool {
	if len(*xs) == 0 {
		return false
	}
	*xs = (*xs)[:len(*xs)/2]
	return true
}

// shorten cuts a message to 4 KiB; false when it is short already.
func shorten(s **string) bool {
	const max = 4 << 10
	if *s == nil || len(**s) <= max {
		return false
	}
	v := truncate(**s, max)
	*s = &v
	return true
}

// withMarker adds `"jerichoci_record": marker` as the object's last key.
func withMarker(obj, marker []byte) []byte {
	out := make([]byte, 0, len(obj)+len(marker)+len(protocol.RecordMarkerKey)+4)
	out = append(out, obj[:len(obj)-1]...)
	out = append(out, `,"`+protocol.RecordMarkerKey+`":`...)
	out = append(out, marker...)
	return append(out, '}')
}

// runFinishedPayload is the run_finished event of rec in at most limit
// bytes: the record trimmed the same way when it is too large.
func runFinishedPayload(rec model.RunRecord, limit int, marker protocol.RecordMarker) ([]byte, error) {
	const head, tail = `{"event":"run_finished","run":`, `}`
	b, _, err := fitRecord(rec, limit-len(head)-len(tail), marker)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(head), b...), tail...), nil
}
