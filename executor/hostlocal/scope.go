package hostlocal

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Scope names the host-local cache directory of a run, below
// <state>/cache/host-local/, as the original does: target-<target id> when
// the run has a target, else job-<id> when it has a single host-local job,
// else adhoc-<first 12 hex of sha256(id1 NUL id2 NUL …)> over its host-local
// job ids in order. Ids and the target are sanitized: ASCII letters, digits
// and '-' stay, any other character becomes one '-'.
func Scope(targetID string, hostJobIDs []string) string {
	if targetID != "" {
		return "target-" + sanitize(targetID)
	}
	if len(hostJobIDs) == 1 {
		return "job-" + sanitize(hostJobIDs[0])
	}
	h := sha256.New()
	for _, id := range hostJobIDs {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return "adhoc-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// sanitize keeps ASCII alphanumerics and '-' and turns every other
// character (not byte) into '-'.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if isScopeChar(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func isScopeChar(r rune) bool {
	return r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// validScope reports whether s can name a cache directory: non-empty and
// made of scope characters only, so it never leaves the cache root.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isScopeChar(r) {
			return false
		}
	}
	return true
}
