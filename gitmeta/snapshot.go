package gitmeta

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/openpm/opm"
)

// Snapshot is an immutable view of the files of one commit. It is safe for
// concurrent use. Reading a path decodes only the trees along it.
type Snapshot struct {
	repo   *Repo
	commit plumbing.Hash
	root   plumbing.Hash // root tree; zero for the empty tree
	when   time.Time
}

// Entry is one name in a directory of a snapshot.
type Entry struct {
	Name string
	Dir  bool
	Hash plumbing.Hash // the blob of a file, the tree of a directory
}

// Snapshot returns the view of a commit; the zero hash is the empty
// repository. It fails with opm.ErrNotFound if there is no such commit.
func (r *Repo) Snapshot(commit plumbing.Hash) (*Snapshot, error) {
	s := &Snapshot{repo: r, commit: commit}
	if commit.IsZero() {
		return s, nil
	}
	r.mu.Lock()
	c, err := r.commit(commit)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.root, s.when = c.TreeHash, c.Committer.When
	return s, nil
}

// Commit returns the snapshot's commit, zero for the empty repository.
func (s *Snapshot) Commit() plumbing.Hash { return s.commit }

// When returns the commit's committer time, zero for the empty repository.
func (s *Snapshot) When() time.Time { return s.when }

// ReadFile returns the content of the file at path. It fails with
// opm.ErrNotFound if there is none and opm.ErrInvalid if path is a directory.
func (s *Snapshot) ReadFile(path string) ([]byte, error) {
	return s.ReadSmallFile(path, opm.MaxManifestSize)
}

// ReadSmallFile is ReadFile for a file of at most max bytes (at most
// opm.MaxManifestSize): a larger one fails with opm.ErrInvalid, told by its
// object's header before anything is inflated.
func (s *Snapshot) ReadSmallFile(path string, max int64) ([]byte, error) {
	e, err := s.Stat(path)
	if err != nil {
		return nil, err
	}
	if e.Dir {
		return nil, opm.Errorf(opm.ErrInvalid, "read %s: is a directory", path)
	}
	s.repo.mu.Lock()
	defer s.repo.mu.Unlock()
	return s.repo.blob(e.Hash, min(max, opm.MaxManifestSize))
}

// ReadDir returns the entries of the directory at path ("" is the root),
// sorted by name. It fails with opm.ErrNotFound if there is none and
// opm.ErrInvalid if path is a file.
func (s *Snapshot) ReadDir(path string) ([]Entry, error) {
	e, err := s.Stat(path)
	if err != nil {
		return nil, err
	}
	if !e.Dir {
		return nil, opm.Errorf(opm.ErrInvalid, "read %s: not a directory", path)
	}
	s.repo.mu.Lock()
	entries, err := s.repo.tree(e.Hash)
	s.repo.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(entries))
	for i, te := range entries {
		out[i] = Entry{Name: te.Name, Dir: te.Mode == filemode.Dir, Hash: te.Hash}
	}
	// Git orders a directory as if its name ended in '/'; order by plain name.
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Stat returns the entry at path; "" is the root directory. It fails with
// opm.ErrNotFound if there is none.
func (s *Snapshot) Stat(path string) (Entry, error) {
	root := Entry{Dir: true, Hash: s.root}
	if path == "" {
		return root, nil
	}
	parts, err := splitPath(path)
	if err != nil {
		return Entry{}, err
	}
	s.repo.mu.Lock()
	defer s.repo.mu.Unlock()
	e := root
	for i, name := range parts {
		if !e.Dir {
			return Entry{}, opm.Errorf(opm.ErrNotFound, "%s not found: %s is a file", path, strings.Join(parts[:i], "/"))
		}
		entries, err := s.repo.tree(e.Hash)
		if err != nil {
			return Entry{}, err
		}
		te, ok := findEntry(entries, name)
		if !ok {
			return Entry{}, opm.Errorf(opm.ErrNotFound, "%s not found in %s", path, shortHash(s.commit))
		}
		e = Entry{Name: name, Dir: te.Mode == filemode.Dir, Hash: te.Hash}
	}
	return e, nil
}

// hashAt returns the hash of the entry at the path parts under the tree root,
// or the zero hash if there is none. The caller holds r.mu.
func (r *Repo) hashAt(root plumbing.Hash, parts []string) (plumbing.Hash, error) {
	h := root
	for i, name := range parts {
		entries, err := r.tree(h)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		te, ok := findEntry(entries, name)
		if !ok || (te.Mode != filemode.Dir && i < len(parts)-1) {
			return plumbing.ZeroHash, nil
		}
		h = te.Hash
	}
	return h, nil
}

// findEntry finds the entry called name in entries sorted in git order.
func findEntry(entries []object.TreeEntry, name string) (object.TreeEntry, bool) {
	if i, ok := searchEntry(entries, name); ok {
		return entries[i], true
	}
	return object.TreeEntry{}, false
}

// compareEntries orders tree entries the way git does: by name, a directory
// comparing as if its name ended in '/'. It does not allocate.
func compareEntries(a, b *object.TreeEntry) int {
	n := min(len(a.Name), len(b.Name))
	if c := strings.Compare(a.Name[:n], b.Name[:n]); c != 0 {
		return c
	}
	return cmp.Compare(sortByte(a, n), sortByte(b, n))
}

// sortByte is byte i of e's sort key, or 0 past its end (names hold no NUL).
func sortByte(e *object.TreeEntry, i int) byte {
	switch {
	case i < len(e.Name):
		return e.Name[i]
	case i == len(e.Name) && e.Mode == filemode.Dir:
		return '/'
	}
	return 0
}

func shortHash(h plumbing.Hash) string { return h.String()[:12] }
