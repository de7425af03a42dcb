package opm

import (
	"strings"

	"github.com/Masterminds/semver/v3"
)

// CompareTags orders tags as people read them: tags that parse as
// versions (semantic versions, with or without a leading v, and their short
// forms: v1, v1.2) first, by version, pre-releases before their release;
// then the others in natural order, runs of digits compared as numbers
// (build-9 before build-10). Ties, such as v1.2 and 1.2.0, fall back to
// plain string order, so the order is total.
func CompareTags(a, b string) int {
	va, ea := semver.NewVersion(a)
	vb, eb := semver.NewVersion(b)
	switch {
	case ea == nil && eb == nil:
		if c := va.Compare(vb); c != 0 {
			return c
		}
	case ea == nil:
		return -1
	case eb == nil:
		return 1
	default:
		if c := compareNatural(a, b); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

// compareNatural compares a and b run by run: runs of digits by their
// value, other runs as strings.
func compareNatural(a, b string) int {
	for a != "" && b != "" {
		ra, rb := run(a), run(b)
		da, db := isDigit(ra[0]), isDigit(rb[0])
		var c int
		switch {
		case da && db:
			na, nb := strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if c = len(na) - len(nb); c == 0 {
				c = strings.Compare(na, nb)
			}
		default:
			c = strings.Compare(ra, rb)
		}
		if c != 0 {
			return c
		}
		a, b = a[len(ra):], b[len(rb):]
	}
	return len(a) - len(b)
}

// run is the leading run of s: its digits, or its other bytes.
func run(s string) string {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i]
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
