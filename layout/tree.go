package layout

// ID names the content of a file (a git blob) or directory (a git tree) of
// the metadata: the same ID, the same bytes. It is git's object id, which a
// gitmeta.Hash is assignable to and from.
type ID = [20]byte

// Entry is one name in a directory of the metadata.
type Entry struct {
	Name string
	Dir  bool
	ID   ID
}

// Tree is one snapshot of the metadata as the layout reads it: the rules
// here never open git themselves; the registry hands in a commit's tree.
// The empty repository is a Tree whose root directory is empty.
type Tree interface {
	// ReadDir lists a directory ("" is the root), sorted by name; a path
	// that does not exist fails with opm.ErrNotFound.
	ReadDir(dir string) ([]Entry, error)
	// ReadFile reads a file.
	ReadFile(p string) ([]byte, error)
	// Stat describes one path.
	Stat(p string) (Entry, error)
}

// FileChange is a file that differs between two trees: Old is the zero ID
// for a file added, New for a file removed.
type FileChange struct {
	Path     string
	Old, New ID
}

// Removed reports whether the change removes the file.
func (c FileChange) Removed() bool { return c.New == ID{} }
