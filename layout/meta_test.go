package layout

import (
	"errors"
	"strings"
	"testing"

	"github.com/openpm/opm"
)

func TestCheckMeta(t *testing.T) {
	for _, c := range []struct {
		depth int
		body  string
		why   string // "" when accepted
	}{
		{1, `{}`, ""},
		{1, ` {"description":"Acme Corp\nsince 1949","labels":{"team":"platform"}} `, ""},
		{3, `{"description":"d","labels":{},"contentType":"helm","icon":"https://x/i.png","documentation":"https://x/doc"}`, ""},
		{1, `{"description":"` + strings.Repeat("a", MaxMetaSize) + `"}`, "over the 65536-byte limit"},
		{1, `[]`, "not one JSON object"},
		{1, `null`, "not one JSON object"},
		{1, `{} {}`, "more follows it"},
		{1, "{\"description\":\"\xff\"}", "not UTF-8"},
		{2, `{"icon":"x"}`, `field "icon" is not one of a project's`},
		{3, `{"Description":"x"}`, `field "Description" is not one of`},
		{3, `{"readme":"x"}`, `field "readme" is not one of`},
		{1, `{"description":3}`, "description: want a string"},
		{1, `{"labels":{"a":1}}`, "labels: want an object of strings"},
		{1, `{"labels":["a"]}`, "labels: want an object of strings"},
		{1, `{"labels":{"":"x"}}`, "a label with no name"},
		{1, `{"labels":{"a":"x\ny"}}`, `label "a": its value contains the control character U+000A`},
		{1, `{"labels":{"a\u0085":"x"}}`, `its name contains the control character U+0085`},
		{1, `{"description":"evil\u202etxt"}`, "bidirectional control U+202E"},
		{3, `{"icon":"a\tb"}`, "icon contains the control character U+0009"},
	} {
		err := CheckMeta("p", c.depth, []byte(c.body))
		switch {
		case c.why == "" && err != nil:
			t.Errorf("%.60s: %v", c.body, err)
		case c.why != "" && (err == nil || !strings.Contains(err.Error(), c.why) || !errors.Is(err, opm.ErrInvalid)):
			t.Errorf("%.60s: %v, want an ErrInvalid saying %q", c.body, err, c.why)
		}
	}
}

// memTree is a Tree of files by path.
type memTree map[string]string

func (m memTree) ReadDir(string) ([]Entry, error) { return nil, errors.New("not used") }
func (m memTree) Stat(string) (Entry, error)      { return Entry{}, errors.New("not used") }
func (m memTree) ReadFile(p string) ([]byte, error) {
	b, ok := m[p]
	if !ok {
		return nil, opm.Errorf(opm.ErrNotFound, "%s", p)
	}
	return []byte(b), nil
}

// TestChangesChecksEveryFile: a commit taken whole (no match) has every
// file it changes checked, description files against their schema, and
// one with no place in the layout refused; a filtered listing reads only
// the tags it chooses.
func TestChangesChecksEveryFile(t *testing.T) {
	changed := func(files memTree) []FileChange {
		var out []FileChange
		for p := range files {
			out = append(out, FileChange{Path: p, New: ID{1}})
		}
		return out
	}
	for _, c := range []struct {
		files memTree
		why   string
	}{
		{memTree{"acme/namespace.json": `{"description":"a"}`, "acme/p/project.json": `{}`, "acme/p/r/repository.json": `{"icon":"i"}`, ".gitattributes": "* -text"}, ""},
		{memTree{"acme/namespace.json": strings.Repeat(" ", MaxMetaSize+1)}, "over the 65536-byte limit"},
		{memTree{"acme/p/r/repository.json": `{"labels":{"a":{"b":"c"}}}`}, "labels: want an object of strings"},
		{memTree{"acme/p/r/junk.bin": "x"}, "not a file of the layout"},
		{memTree{"README": "x"}, "not a file of the layout"},
		{memTree{"acme/p/r/tags/v1.txt": "x"}, "not a file of the layout"},
		{memTree{".big": strings.Repeat("x", MaxMetaSize+1)}, "over the 65536-byte limit"},
	} {
		_, err := Changes(changed(c.files), c.files, nil)
		if c.why == "" && err != nil || c.why != "" && (err == nil || !strings.Contains(err.Error(), c.why)) {
			t.Errorf("%v: %v, want %q", c.files, err, c.why)
		}
		// A filtered listing takes only tags: the rest is not read.
		if _, err := Changes(changed(c.files), c.files, func(opm.Reference) bool { return true }); err != nil {
			t.Errorf("filtered %v: %v", c.files, err)
		}
	}
	// A file removed is not read.
	if _, err := Changes([]FileChange{{Path: "acme/p/r/junk.bin", Old: ID{1}}}, memTree{}, nil); err != nil {
		t.Errorf("a removal: %v", err)
	}
}
