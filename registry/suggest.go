package registry

import (
	"fmt"
	"slices"
	"strings"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
)

// nearest is the name of have closest to want by edit distance, if one is
// close enough to be a likely misspelling (at most a third of want's length
// away, and at most 3 edits), else "".
func nearest(want string, have []string) string {
	best, bestD := "", min(3, max(1, len(want)/3))+1
	for _, h := range have {
		if d := editDistance(want, h); d < bestD && h != want {
			best, bestD = h, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Missing is the not-found error of a tag reference (ref with a tag) or a
// node (parts, when ref has no tag) that the view does not have: it names
// the first level that is missing — the namespace, project, repository or
// tag — and the nearest name there, if one is close. It reads the names of
// that level, so it is for messages after a miss (the CLI, the listing
// API, the web pages' 404), not for the mount's lookups.
func (v *View) Missing(ref opm.Reference, parts []string) error {
	if ref.Tag != "" {
		parts = []string{ref.Repository.Namespace, ref.Repository.Project, ref.Repository.Name}
	}
	for i := 1; i <= len(parts); i++ {
		ok, err := v.HasNode(parts[:i])
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		what := strings.Join(parts[:i], "/")
		siblings, _ := v.Children(parts[:i-1])
		var have []string
		for _, s := range siblings {
			have = append(have, strings.Join(append(slices.Clone(parts[:i-1]), s), "/"))
		}
		return suggested(fmt.Sprintf("%s: no such %s", what, layout.LevelNames[i]), what, have)
	}
	if ref.Tag == "" {
		return opm.Errorf(opm.ErrNotFound, "%s: not found", strings.Join(parts, "/"))
	}
	tags, _ := v.Tags(ref.Repository)
	var have []string
	for _, t := range tags {
		have = append(have, opm.Reference{Repository: ref.Repository, Tag: t.Tag}.String())
	}
	return suggested(fmt.Sprintf("%s: no such tag", ref), ref.String(), have)
}

// suggested is the not-found error msg, with the name of have nearest to
// want suggested when one is close.
func suggested(msg, want string, have []string) error {
	if n := nearest(want, have); n != "" {
		msg += fmt.Sprintf("; did you mean %s?", n)
	}
	return opm.Errorf(opm.ErrNotFound, "%s", msg)
}
