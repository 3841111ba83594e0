// Package units reads and writes byte counts the way Incus writes them
// (docs/INCUS.md: root disk sizes go to Incus as written). It is a leaf:
// the standard library only.
package units

import (
	"fmt"
	"math"
	"strconv"
)

// sizeUnits are the suffixes a size may carry: Incus's, decimal and
// binary (GB is 10^9 bytes, GiB 2^30), and none for plain bytes.
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15, "EB": 1e18,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50, "EiB": 1 << 60,
}

// binaryUnits are the suffixes FormatSize writes, largest first.
var binaryUnits = []string{"EiB", "PiB", "TiB", "GiB", "MiB", "KiB"}

// ParseSize reads a size the way Incus writes one: a whole number and an
// optional unit, with nothing between or around them, as in 20GiB (20·2^30
// bytes), 10GB (10·10^9 bytes), 512MiB or 1073741824 (bytes). Zero is a
// size: a caller for which it means nothing refuses it itself.
func ParseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	mult, ok := sizeUnits[s[i:]]
	if i == 0 || !ok {
		return 0, fmt.Errorf("%q is not a size: want a whole number and an optional unit (B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB, EiB), as in 20GiB", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// FormatSize writes n with the largest binary unit that divides it, so
// that ParseSize reads it back: 4GiB, 1536KiB, 1000.
func FormatSize(n int64) string {
	if n != 0 {
		for _, u := range binaryUnits {
			if m := sizeUnits[u]; n%m == 0 {
				return strconv.FormatInt(n/m, 10) + u
			}
		}
	}
	return strconv.FormatInt(n, 10)
}
