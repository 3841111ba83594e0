package guest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

// The lifecycle files, written as the original's lifecycle helper writes
// them (docs/CONTRACTS.md, "Guest runner environment"): status.json and
// result.json as two-space-indented JSON with a final newline, replaced
// atomically, mode 0600; one compact line per event in events.jsonl, its
// number kept in events.jsonl.seq under an exclusive lock. Keys come in the
// helper's order and strings are escaped as it escapes them (every byte
// outside printable ASCII as \uXXXX), so the files are the same bytes.

// lifecycle writes the guest's lifecycle files into dir.
type lifecycle struct {
	dir        string
	now        func() time.Time
	bootIDPath string // /proc/sys/kernel/random/boot_id
}

// field is one key of a JSON object, in order; value is a string, an int,
// a bool or a []field (an object).
type field struct {
	key   string
	value any
}

// status replaces status.json.
func (l lifecycle) status(state model.GuestState, message string, details []field) error {
	obj := []field{{"schema_version", 1}, {"state", string(state)}, {"updated_at", stamp(l.now())}, {"message", message}}
	obj = l.withBootAndDetails(obj, details)
	return atomicfile.WriteFile(filepath.Join(l.dir, "status.json"), indentJSON(obj), 0o600)
}

// event appends one line to events.jsonl with the next sequence number.
func (l lifecycle) event(kind model.GuestState, message string, details []field) error {
	obj := []field{{"schema_version", 1}, {"kind", string(kind)}, {"timestamp", stamp(l.now())}, {"message", message}}
	obj = l.withBootAndDetails(obj, details)
	seq, err := l.nextSeq()
	if err != nil {
		return err
	}
	obj = append(obj, field{"seq", seq})
	f, err := os.OpenFile(filepath.Join(l.dir, "events.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	_, err = f.Write(append(compactJSON(obj), '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append event to %s: %w", f.Name(), err)
	}
	return nil
}

// result replaces result.json: completed for exit code 0, else failed.
func (l lifecycle) result(exitCode int, message string) error {
	status := model.TerminalCompleted
	if exitCode != 0 {
		status = model.TerminalFailed
	}
	obj := []field{{"schema_version", 1}, {"status", string(status)}, {"exit_code", exitCode},
		{"finished_at", stamp(l.now())}, {"message", message}}
	return atomicfile.WriteFile(filepath.Join(l.dir, "result.json"), indentJSON(obj), 0o600)
}

func (l lifecycle) withBootAndDetails(obj, details []field) []field {
	if id := l.bootID(); id != "" {
		obj = append(obj, field{"boot_id", id})
	}
	if details != nil {
		obj = append(obj, field{"details", details})
	}
	return obj
}

// bootID is the kernel's boot id, "" when it cannot be read (then the key
// is left out).
func (l lifecycle) bootID() string {
	b, err := os.ReadFile(l.bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// nextSeq increments the number in events.jsonl.seq under an exclusive
// lock, so that runners sharing the directory number their events in one
// sequence.
func (l lifecycle) nextSeq() (int, error) {
	path := filepath.Join(l.dir, "events.jsonl.seq")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return 0, fmt.Errorf("event sequence: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return 0, fmt.Errorf("lock event sequence %s: %w", path, err)
	}
	b := make([]byte, 64)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read event sequence %s: %w", path, err)
	}
	seq := 0
	if raw := strings.TrimSpace(string(b[:n])); raw != "" {
		if seq, err = strconv.Atoi(raw); err != nil {
			return 0, fmt.Errorf("event sequence %s: expected a whole number, got %q", path, raw)
		}
	}
	seq++
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("write event sequence %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(seq)+"\n"), 0); err != nil {
		return 0, fmt.Errorf("write event sequence %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("write event sequence %s: %w", path, err)
	}
	return seq, nil
}

// stamp is t in local time to the second with a numeric offset
// (2026-03-19T01:09:40+00:00), the helper's time format.
func stamp(t time.Time) string { return t.Local().Format("2006-01-02T15:04:05-07:00") }

// compactJSON writes obj on one line with ", " and ": " separators.
func compactJSON(obj []field) []byte {
	var b strings.Builder
	writeValue(&b, obj, -1, 0)
	return []byte(b.String())
}

// indentJSON writes obj indented by two spaces, with a final newline.
func indentJSON(obj []field) []byte {
	var b strings.Builder
	writeValue(&b, obj, 2, 0)
	b.WriteByte('\n')
	return []byte(b.String())
}

// writeValue writes v; indent < 0 is the compact form.
func writeValue(b *strings.Builder, v any, indent, depth int) {
	switch v := v.(type) {
	case string:
		writeString(b, v)
	case int:
		b.WriteString(strconv.Itoa(v))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case []field:
		if len(v) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, f := range v {
			switch {
			case indent >= 0:
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteByte('\n')
				b.WriteString(strings.Repeat(" ", indent*(depth+1)))
			case i > 0:
				b.WriteString(", ")
			}
			writeString(b, f.key)
			b.WriteString(": ")
			writeValue(b, f.value, indent, depth+1)
		}
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*depth))
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("guest: lifecycle value of type %T", v))
	}
}

// writeString quotes s: printable ASCII as is (but `"` and `\`), the
// usual short escapes, everything else as \uXXXX (UTF-16 surrogate pairs
// above U+FFFF; a byte that is not UTF-8 as U+FFFD).
func writeString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r <= 0x7e:
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			if r == utf8.RuneError {
				r = 0xfffd
			}
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
}
