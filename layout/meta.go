package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/openpm/opm"
)

// MaxMetaSize is the largest description file (namespace.json, project.json,
// repository.json) the registry takes, and the largest of git's own files
// at the top of the tree (.gitattributes and the like). A description is a
// few lines and labels; every listing and web page parses the files it
// shows, so a larger one would make each page view cost what the file
// does.
const MaxMetaSize = 64 << 10

// metaFields are the fields of a description file, by depth (1 to 3):
// labels is an object of strings, every other field a string.
// docs/design.md §3 has the schema.
var metaFields = [4][]string{nil,
	{"description", "labels"},
	{"description", "labels"},
	{"description", "labels", "contentType", "icon", "documentation"},
}

// CheckMeta checks the description file p of a node at depth (1 to 3) as
// its bytes b: at most MaxMetaSize bytes of UTF-8, one JSON object whose
// fields are those docs/design.md §3 allows, each a string (labels: an
// object of strings), with no control character (but newlines and tabs in
// the description) and no bidirectional control. It fails with
// opm.ErrInvalid naming p and the rule.
func CheckMeta(p string, depth int, b []byte) error {
	if err := checkMeta(depth, b); err != nil {
		return opm.Errorf(opm.ErrInvalid, "metadata file %q: %s", p, err)
	}
	return nil
}

func checkMeta(depth int, b []byte) error {
	if len(b) > MaxMetaSize {
		return fmt.Errorf("%d bytes, over the %d-byte limit of a description file", len(b), MaxMetaSize)
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("not UTF-8")
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return fmt.Errorf("not one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("not one JSON object: more follows it")
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(metaFields[depth], k) {
			return fmt.Errorf("field %q is not one of a %s's (%s)", k, LevelNames[depth], strings.Join(metaFields[depth], ", "))
		}
		if k == "labels" {
			var labels map[string]string
			if err := json.Unmarshal(fields[k], &labels); err != nil {
				return fmt.Errorf("labels: want an object of strings")
			}
			for name, v := range labels {
				if name == "" {
					return fmt.Errorf("labels: a label with no name")
				}
				if bad := badText(name, false); bad != "" {
					return fmt.Errorf("label %q: its name %s", name, bad)
				}
				if bad := badText(v, false); bad != "" {
					return fmt.Errorf("label %q: its value %s", name, bad)
				}
			}
			continue
		}
		var s string
		if err := json.Unmarshal(fields[k], &s); err != nil {
			return fmt.Errorf("%s: want a string", k)
		}
		if bad := badText(s, k == "description"); bad != "" {
			return fmt.Errorf("%s %s", k, bad)
		}
	}
	return nil
}

// badText says what is wrong with text shown in listings, or "": a control
// character (lines allows newlines and tabs) or a bidirectional control
// (they make a text read as another).
func badText(s string, lines bool) string {
	for _, r := range s {
		switch {
		case lines && (r == '\n' || r == '\t'):
		case unicode.IsControl(r):
			return fmt.Sprintf("contains the control character %U", r)
		case unicode.Is(unicode.Bidi_Control, r):
			return fmt.Sprintf("contains the bidirectional control %U", r)
		}
	}
	return ""
}

// checkFile checks a file of a commit taken whole (see Changes) that holds
// no manifest: a description file against its schema, one of git's own at
// the top against MaxMetaSize; any other file has no place in the layout.
func checkFile(at Tree, p Path, path string) error {
	switch {
	case p.Role == RoleMeta:
		b, err := at.ReadFile(path)
		if err != nil {
			return err
		}
		return CheckMeta(path, len(p.Level), b)
	case isGitFile(path):
		b, err := at.ReadFile(path)
		if err != nil {
			return err
		}
		if len(b) > MaxMetaSize {
			return opm.Errorf(opm.ErrInvalid, "metadata file %q: %d bytes, over the %d-byte limit", path, len(b), MaxMetaSize)
		}
		return nil
	}
	return opm.Errorf(opm.ErrInvalid, "metadata file %q: not a file of the layout (docs/design.md §3)", path)
}

// isGitFile reports whether path is one of git's own files at the top of
// the tree (.gitattributes and the like), which the layout leaves alone.
func isGitFile(path string) bool {
	return path != "" && path[0] == '.' && !strings.Contains(path, "/")
}

// checkMetaEntry reports (see Walk) the description file p of a node at
// depth if it breaks CheckMeta.
func checkMetaEntry(s Tree, p string, depth int, report func(p, detail string) error) error {
	b, err := s.ReadFile(p)
	if err == nil {
		err = checkMeta(depth, b)
	} else if !errors.Is(err, opm.ErrInvalid) {
		return err // a file over git's limit is ErrInvalid: reported
	}
	if err != nil {
		return report(p, "description file: "+err.Error())
	}
	return nil
}
