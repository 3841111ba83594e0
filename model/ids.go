package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// NewRunID returns `<UTC YYYYMMDDTHHMMSSZ>-<first 8 hex of a random UUIDv4>`;
// lexical order is time order.
func NewRunID(now time.Time, id uuid.UUID) string {
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id[:4])
}

var runIDPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// ValidRunID reports whether s has the run id shape.
func ValidRunID(s string) bool { return runIDPattern.MatchString(s) }

// InstanceName is the Incus instance of one job of one run:
// `pikaci-` + the first 12 hex of sha256("<run_id>:<job_id>").
func InstanceName(runID, jobID string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s:%s", runID, jobID)))
	return "pikaci-" + hex.EncodeToString(sum[:])[:12]
}

// sanitize lowercases ASCII letters and digits, maps everything else to '-'
// and trims '-' at both ends, as the original's device names do.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		default:
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

// SnapshotDeviceName is the Incus disk device of the read-only snapshot:
// `pk-snapsh-` + the low 32 bits of FNV-1a-64 over
// `snapshot-<sanitize(source)>-<sanitize(guest path)>`, in hex.
func SnapshotDeviceName(source, guestPath string) string {
	h := fnv.New64a()
	h.Write([]byte("snapshot-" + sanitize(source) + "-" + sanitize(guestPath)))
	return fmt.Sprintf("pk-snapsh-%08x", uint32(h.Sum64()))
}
