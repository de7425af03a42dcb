package layout

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/openpm/opm"
)

// Selector chooses tags: the one grammar of opm cache pin, opm sync
// --include/--exclude, opm sync --prefetch and opm ls (docs/design.md §1):
//
//	acme                      every tag of namespace acme
//	acme/web                  every tag of project acme/web
//	acme/web/site             every tag of repository acme/web/site
//	acme/web/site:v1.2.0      one tag
//	acme/*/site:v1.*          globs (path.Match) in any part
//
// A selector of fewer than three parts selects everything below what it
// names; a :TAG needs all three parts before it.
type Selector struct {
	raw   string
	parts []string // 1 to 3, each a name or a glob
	tag   string   // "" without a :TAG
}

// SelectorHelp is the grammar, in the words of error messages.
const SelectorHelp = "want NS[/PROJECT[/REPO]][:TAG], globs allowed (e.g. acme, acme/web/site:v1.*, 'acme/*')"

// ParseSelector parses and checks a selector: malformed globs, empty parts,
// names and tags that could never match are refused.
func ParseSelector(s string) (Selector, error) {
	bad := func(why string) (Selector, error) {
		return Selector{}, opm.Errorf(opm.ErrInvalid, "selector %q: %s; %s", s, why, SelectorHelp)
	}
	if s == "" {
		return bad("empty")
	}
	if _, err := path.Match(s, ""); err != nil {
		return bad("malformed glob")
	}
	repo, tag, hasTag := strings.Cut(s, ":")
	if strings.Contains(tag, ":") {
		return bad("more than one ':'")
	}
	parts := strings.Split(repo, "/")
	if len(parts) > 3 {
		return bad("more than three parts before the tag")
	}
	if hasTag && len(parts) != 3 {
		return bad("a :TAG needs NS/PROJECT/REPO before it")
	}
	for i, part := range parts {
		if part == "" {
			return bad("an empty part")
		}
		if !isGlob(part) && !opm.ValidComponent(part) {
			return bad(fmt.Sprintf("%s %q is not a valid name (lower-case letters and digits, separated by '.', '_' or '-')", LevelNames[i+1], part))
		}
	}
	if hasTag && (tag == "" || !isGlob(tag) && !opm.ValidTag(tag)) {
		return bad(fmt.Sprintf("%q is not a valid tag", tag))
	}
	return Selector{raw: s, parts: parts, tag: tag}, nil
}

func isGlob(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func (s Selector) String() string { return s.raw }

// Match reports whether the selector chooses the tag ref. A reference by
// digest is never chosen.
func (s Selector) Match(ref opm.Reference) bool {
	if ref.Tag == "" || len(s.parts) == 0 {
		return false
	}
	names := [3]string{ref.Repository.Namespace, ref.Repository.Project, ref.Repository.Name}
	for i, p := range s.parts {
		if ok, _ := path.Match(p, names[i]); !ok {
			return false
		}
	}
	if s.tag == "" {
		return true
	}
	ok, _ := path.Match(s.tag, ref.Tag)
	return ok
}

// MayMatchBelow reports whether the selector may choose a tag below the
// node parts (0 to 3 names): a walk prunes the nodes it cannot.
func (s Selector) MayMatchBelow(parts []string) bool {
	for i, name := range parts {
		if i >= len(s.parts) {
			return true
		}
		if ok, _ := path.Match(s.parts[i], name); !ok {
			return false
		}
	}
	return true
}

// Prefix is the node a selector without globs and tag names (its parts), and
// whether it is one: opm ls lists it as a level.
func (s Selector) Prefix() ([]string, bool) {
	if s.tag != "" || slices.ContainsFunc(s.parts, isGlob) {
		return nil, false
	}
	return s.parts, true
}

// Filter is a set of selectors to include and to exclude. A filter with
// no Include chooses every tag not excluded.
type Filter struct {
	Include, Exclude []Selector
}

// ParseFilter parses include and exclude selectors.
func ParseFilter(include, exclude []string) (Filter, error) {
	var f Filter
	for _, s := range include {
		sel, err := ParseSelector(s)
		if err != nil {
			return Filter{}, err
		}
		f.Include = append(f.Include, sel)
	}
	for _, s := range exclude {
		sel, err := ParseSelector(s)
		if err != nil {
			return Filter{}, err
		}
		f.Exclude = append(f.Exclude, sel)
	}
	return f, nil
}

// All reports whether the filter chooses every tag.
func (f Filter) All() bool { return len(f.Include) == 0 && len(f.Exclude) == 0 }

// Match reports whether the filter chooses the tag ref.
func (f Filter) Match(ref opm.Reference) bool {
	if ref.Tag == "" {
		return false
	}
	if len(f.Include) > 0 && !slices.ContainsFunc(f.Include, func(s Selector) bool { return s.Match(ref) }) {
		return false
	}
	return !slices.ContainsFunc(f.Exclude, func(s Selector) bool { return s.Match(ref) })
}
