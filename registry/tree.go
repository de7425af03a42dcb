package registry

import (
	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// The layout's rules read the metadata through layout.Tree; these hand
// them git's: a commit's snapshot, the changes between two commits, and
// commit messages built from and read into facts.

// gitTree is a snapshot as a layout.Tree.
type gitTree struct{ s *gitmeta.Snapshot }

func (t gitTree) ReadDir(dir string) ([]layout.Entry, error) {
	if dir == "" && t.s.Commit().IsZero() {
		return nil, nil // the empty repository: an empty root
	}
	ents, err := t.s.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]layout.Entry, len(ents))
	for i, e := range ents {
		out[i] = layout.Entry{Name: e.Name, Dir: e.Dir, ID: e.Hash}
	}
	return out, nil
}

func (t gitTree) ReadFile(p string) ([]byte, error) { return t.s.ReadFile(p) }

func (t gitTree) Stat(p string) (layout.Entry, error) {
	e, err := t.s.Stat(p)
	return layout.Entry{Name: e.Name, Dir: e.Dir, ID: e.Hash}, err
}

// fileChanges is a diff of gitmeta as the layout's changes.
func fileChanges(diff []gitmeta.DiffEntry) []layout.FileChange {
	out := make([]layout.FileChange, len(diff))
	for i, d := range diff {
		out[i] = layout.FileChange{Path: d.Path, Old: d.Old, New: d.New}
	}
	return out
}

// tagChanges lists the manifest files that differ from commit a to commit b
// of repo (either may be zero, the empty repository), with their manifests
// at b, under the layout's rules (layout.Changes).
func tagChanges(repo *gitmeta.Repo, a, b Hash, match func(opm.Reference) bool) ([]layout.TagChange, error) {
	diff, err := repo.Diff(a, b)
	if err != nil {
		return nil, err
	}
	snap, err := repo.Snapshot(b)
	if err != nil {
		return nil, err
	}
	return layout.Changes(fileChanges(diff), gitTree{snap}, match)
}

// commitMessage is a commit message: the subject (what happened) and the
// facts as trailers.
func commitMessage(subject string, f layout.Facts) gitmeta.Message {
	m := gitmeta.Message{Subject: subject}
	f.Trailers(func(k, v string) { m.Trailers = append(m.Trailers, gitmeta.Trailer{Key: k, Value: v}) })
	return m
}

// factsOf reads the facts of a commit message's trailers.
func factsOf(m gitmeta.Message) layout.Facts {
	return layout.ParseFacts(func(k string) string { v, _ := m.Trailer(k); return v })
}
