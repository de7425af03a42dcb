package opm

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// The rules of the paths inside a package (docs/design.md §2): one set,
// applied wherever a manifest enters — a push, an HTTP PUT, a sync or
// follow from any remote, a commit fsck walks — and again by pull and the
// mount before they write or show anything.

// ValidatePath checks a file path inside a package: relative, slash
// separated, clean, valid UTF-8, no "." or ".." parts, no backslashes, no
// control characters (C0, DEL or C1) and no bidirectional controls (they
// make one name look like another), and no part that is, or that git or a
// case-insensitive or NTFS file system takes for, ".git". Such a path can
// never leave the directory it is joined to, nor write into a git
// repository's own directory.
func ValidatePath(p string) error {
	bad := func(why string) error { return Errorf(ErrInvalid, "package path %q %s", p, why) }
	switch {
	case p == "":
		return bad("is empty")
	case len(p) > MaxPathLen:
		return bad(fmt.Sprintf("is longer than %d bytes", MaxPathLen))
	case !utf8.ValidString(p):
		return bad("is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return bad("is absolute")
	case strings.ContainsRune(p, '\\'):
		return bad("contains a backslash")
	}
	for part := range strings.SplitSeq(p, "/") {
		switch {
		case part == "":
			return bad("has an empty part")
		case part == "." || part == "..":
			return bad("has a '.' or '..' part")
		case len(part) > 255:
			return bad("has a part longer than 255 bytes")
		case IsDotGit(part):
			return bad(fmt.Sprintf("has a part %q that is git's own directory, .git (git refuses such paths too)", part))
		}
	}
	// After the parts: a .git that HFS+ reads through an invisible code
	// point is named as git's directory.
	if why := badRunes(p); why != "" {
		return bad(why)
	}
	return nil
}

// The one rule of text that names things — file titles and link targets,
// artifact and media types (the page shows them): valid UTF-8 (checked
// where each is read) and no code point that does not print as itself.
// Printable escapes the same code points where text is printed.

// badRunes says why s holds a character no name may hold, "" if none.
func badRunes(s string) string {
	for _, r := range s {
		if why := badRune(r); why != "" {
			return why
		}
	}
	return ""
}

// badRune says why r may not be in a name, "" if it may: a control
// character (C0, DEL, C1), a bidirectional control (it makes a name read
// as another), or a code point that prints as nothing or breaks the line
// — the format characters (Cf: zero-width space and joiners, soft hyphen,
// word joiner, byte order mark, …), the line and paragraph separators (Zl,
// Zp) and the other default-ignorable ones (the Hangul fillers, the
// combining grapheme joiner, …): two names would print alike.
func badRune(r rune) string {
	switch {
	case unicode.IsControl(r):
		return fmt.Sprintf("contains the control character %U", r)
	case isBidiControl(r):
		return fmt.Sprintf("contains the bidirectional control %U (it makes a name read as another)", r)
	case isInvisible(r):
		return fmt.Sprintf("contains the invisible or line-breaking character %U (it makes a name print as another)", r)
	}
	return ""
}

// refused reports whether the rule of names refuses r (badRune).
func refused(r rune) bool { return badRune(r) != "" }

// isInvisible reports the code points that print as nothing or break the
// line: Unicode's format characters (Cf), line and paragraph separators
// (Zl, Zp) and other default-ignorable code points (U+115F, U+1160, U+3164,
// U+FFA0: the Hangul fillers; U+034F, …). The zero-width non-joiner and
// joiner (U+200C, U+200D) are spelling, not spoofing: Persian and the
// Indic scripts write words with them, and emoji sequences join with the
// second; names keep them.
func isInvisible(r rune) bool {
	if r == 0x200c || r == 0x200d {
		return false
	}
	return r >= 0x80 && unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Other_Default_Ignorable_Code_Point)
}

// isBidiControl reports the Unicode bidirectional formatting characters:
// ALM, LRM, RLM, the embeddings and overrides (LRE … RLO) and the
// isolates (LRI … PDI).
func isBidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}

// CheckName refuses text that names something — what is the field, as an
// error names it ("manifest artifactType") — that breaks the rule of
// names (badRune) or is not valid UTF-8.
func CheckName(what, s string) error {
	if !utf8.ValidString(s) {
		return Errorf(ErrInvalid, "%s %q is not valid UTF-8", what, s)
	}
	if why := badRunes(s); why != "" {
		return Errorf(ErrInvalid, "%s %q %s", what, s, why)
	}
	return nil
}

// Printable is s as opm prints it to a terminal or a log: each code point
// the rule of names refuses (badRune) and each byte that is not UTF-8
// escaped as Go escapes it (\t, \x1b, \u202e, \xff), the rest as it is.
// Text from git or a manifest (authors, subjects, paths, error details)
// goes through it: an escape sequence from an origin never reaches the
// operator's terminal.
func Printable(s string) string {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || refused(r) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !refused(r):
			b.WriteString(s[i : i+n])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += n
	}
	return b.String()
}

// IsDotGit reports whether a path part names git's own directory on some
// file system, as git's verify_path sees it: ".git" in any case, with the
// code points HFS+ ignores removed, with trailing dots and spaces (NTFS
// drops them), as the NTFS short name "git~1", or followed by an NTFS
// stream (".git::$INDEX_ALLOCATION").
func IsDotGit(part string) bool {
	s := strings.Map(func(r rune) rune {
		if isHFSIgnorable(r) {
			return -1
		}
		return r
	}, part)
	s = strings.ToLower(s)
	var rest string
	switch {
	case strings.HasPrefix(s, ".git"):
		rest = s[len(".git"):]
	case strings.HasPrefix(s, "git~1"):
		rest = s[len("git~1"):]
	default:
		return false
	}
	if strings.HasPrefix(rest, ":") {
		return true
	}
	return strings.Trim(rest, ". ") == ""
}

// isHFSIgnorable reports the code points HFS+ leaves out of a name when it
// compares names (git's is_hfs_dotgit).
func isHFSIgnorable(r rune) bool {
	return r == 0x200c || r == 0x200d || r == 0x200e || r == 0x200f ||
		r >= 0x202a && r <= 0x202e || r >= 0x206a && r <= 0x206f || r == 0xfeff
}

// ValidateSymlink checks the target of a symbolic link at linkPath. Links
// are kept verbatim, as tar and squashfs keep them — absolute ones, ones
// that leave the package and dangling ones too (docs/design.md §2): what a
// link points at is read with the reader's own rights, and pull never
// writes through one. The target must be valid UTF-8 without control or
// bidirectional characters (it is shown in listings), and not overlong.
func ValidateSymlink(linkPath, target string) error {
	bad := func(why string) error {
		return Errorf(ErrInvalid, "symlink %q -> %q %s", linkPath, target, why)
	}
	switch {
	case target == "" || len(target) > MaxPathLen:
		return bad("has an empty or overlong target")
	case !utf8.ValidString(target):
		return bad("is not valid UTF-8")
	}
	if why := badRunes(target); why != "" {
		return bad(why)
	}
	return nil
}

// checkTree refuses duplicate titles, a title that is both a file and a
// directory of another, more than MaxDirs directories, and titles that
// differ only by case or Unicode normalization (NFC/NFD): on macOS and
// Windows they are one file, and one would overwrite the other. Sorted so
// that '/' comes before every other byte, the paths below a title directly
// follow it, so only neighbours need comparing: O(n log n) whatever the
// depth of the paths.
func checkTree(layers []Descriptor) error {
	titles := make([]string, 0, len(layers))
	for _, l := range layers {
		if t := l.Annotations[AnnotationTitle]; t != "" {
			titles = append(titles, t)
		}
	}
	slices.SortFunc(titles, comparePaths)
	if countDirs(titles) > MaxDirs {
		return Errorf(ErrInvalid, "package paths make more than %d directories", MaxDirs)
	}
	if err := checkNeighbours(titles, titles, "two files claim the package path %[1]q"); err != nil {
		return err
	}
	// The same again, folded as a case-insensitive, normalizing file
	// system compares names.
	type folded struct{ fold, title string }
	fs := make([]folded, len(titles))
	plain := true
	for i, t := range titles {
		fs[i] = folded{foldPath(t), t}
		plain = plain && fs[i].fold == t
	}
	if plain {
		return nil // nothing folds: the check above was this one
	}
	slices.SortFunc(fs, func(a, b folded) int { return comparePaths(a.fold, b.fold) })
	keys, names := make([]string, len(fs)), make([]string, len(fs))
	for i, f := range fs {
		keys[i], names[i] = f.fold, f.title
	}
	return checkNeighbours(keys, names, "package paths %q and %q differ only by case or Unicode normalization (on macOS and Windows they are one file)")
}

// checkNeighbours refuses, in keys sorted by comparePaths (titles[i] is
// the title of keys[i]), a key equal to the one before it (same formats
// the two titles) or one that is the directory of the next.
func checkNeighbours(keys, titles []string, same string) error {
	for i := 1; i < len(keys); i++ {
		prev, k := keys[i-1], keys[i]
		switch {
		case k == prev:
			return Errorf(ErrInvalid, same, titles[i-1], titles[i])
		case len(k) > len(prev) && k[len(prev)] == '/' && strings.HasPrefix(k, prev):
			return Errorf(ErrInvalid, "package path %q is a file and also the directory of %q", titles[i-1], titles[i])
		}
	}
	return nil
}

var folder = cases.Fold()

// foldPath is p as a case-insensitive, normalization-insensitive file
// system compares it: case-folded, in Unicode normal form C.
func foldPath(p string) string {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c >= 0x80 || 'A' <= c && c <= 'Z' {
			return norm.NFC.String(folder.String(p))
		}
	}
	return p // ASCII without upper case folds to itself
}

// countDirs counts the directories that sorted paths (in any byte order:
// the paths in one directory are neighbours) make.
func countDirs(sorted []string) int {
	dirs := 0
	for i, t := range sorted {
		// The directories of t that the previous path is not in.
		common := 0
		if i > 0 {
			prev := sorted[i-1]
			for common < len(prev) && common < len(t) && prev[common] == t[common] {
				common++
			}
			common = strings.LastIndexByte(t[:common], '/') + 1
		}
		dirs += strings.Count(t[common:], "/")
	}
	return dirs
}

// comparePaths orders paths byte by byte, with '/' before every other byte.
func comparePaths(a, b string) int {
	rank := func(c byte) int {
		if c == '/' {
			return -1
		}
		return int(c)
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return rank(a[i]) - rank(b[i])
		}
	}
	return len(a) - len(b)
}
