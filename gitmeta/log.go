package gitmeta

import (
	"context"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// LogEntry is one commit of a history.
type LogEntry struct {
	Commit  plumbing.Hash
	Parent  plumbing.Hash // first parent; zero for the first commit
	Author  string
	Email   string
	When    time.Time // author time
	Message Message
}

// Log walks first parents from the commit from (zero means the head of main),
// newest first, and returns the commits that changed something at or under
// path ("" means every commit), at most limit of them (limit <= 0 means all).
//
// A commit changed path if the hash of the entry at path differs between it
// and its parent, so each step reads only the trees along path.
func (r *Repo) Log(ctx context.Context, from plumbing.Hash, path string, limit int) ([]LogEntry, error) {
	var parts []string
	if path != "" {
		var err error
		if parts, err = splitPath(path); err != nil {
			return nil, err
		}
	}
	if from.IsZero() {
		var err error
		if from, err = r.Head(); err != nil || from.IsZero() {
			return nil, err
		}
	}
	c, at, err := r.commitAt(from, parts)
	if err != nil {
		return nil, err
	}
	var out []LogEntry
	for limit <= 0 || len(out) < limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var parent *object.Commit
		var parentAt plumbing.Hash
		if len(c.ParentHashes) > 0 {
			if parent, parentAt, err = r.commitAt(c.ParentHashes[0], parts); err != nil {
				return nil, err
			}
		}
		if at != parentAt {
			out = append(out, logEntry(c))
		}
		if parent == nil {
			break
		}
		c, at = parent, parentAt
	}
	return out, nil
}

// commitAt reads commit h and the hash of the entry at parts in its tree.
func (r *Repo) commitAt(h plumbing.Hash, parts []string) (*object.Commit, plumbing.Hash, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commit(h)
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	at, err := r.hashAt(c.TreeHash, parts)
	return c, at, err
}

func logEntry(c *object.Commit) LogEntry {
	e := LogEntry{
		Commit:  c.Hash,
		Author:  c.Author.Name,
		Email:   c.Author.Email,
		When:    c.Author.When,
		Message: ParseMessage(c.Message),
	}
	if len(c.ParentHashes) > 0 {
		e.Parent = c.ParentHashes[0]
	}
	return e
}

// DiffEntry is a file that differs between two commits.
type DiffEntry struct {
	Path string
	Old  plumbing.Hash // the blob before; zero if the file was added
	New  plumbing.Hash // the blob after; zero if the file was deleted
}

// Diff lists the files that were added, modified or deleted from commit a to
// commit b (either may be zero, the empty repository), in git's tree order.
// It descends only into directories whose hashes differ.
func (r *Repo) Diff(a, b plumbing.Hash) ([]DiffEntry, error) {
	ta, err := r.rootTree(a)
	if err != nil {
		return nil, err
	}
	tb, err := r.rootTree(b)
	if err != nil {
		return nil, err
	}
	var out []DiffEntry
	return out, r.diffTrees(ta, tb, "", &out)
}

func (r *Repo) rootTree(commit plumbing.Hash) (plumbing.Hash, error) {
	if commit.IsZero() {
		return plumbing.ZeroHash, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commit(commit)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return c.TreeHash, nil
}

// diffTrees appends the files that differ between trees a and b (zero is the
// empty tree) to out, with their paths prefixed by dir.
func (r *Repo) diffTrees(a, b plumbing.Hash, dir string, out *[]DiffEntry) error {
	if a == b {
		return nil
	}
	r.mu.Lock()
	ea, err := r.tree(a)
	var eb []object.TreeEntry
	if err == nil {
		eb, err = r.tree(b)
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	// One side of an entry: its hash if it is a directory or a file, else zero.
	side := func(e *object.TreeEntry, dir bool) plumbing.Hash {
		if e == nil || (e.Mode == filemode.Dir) != dir {
			return plumbing.ZeroHash
		}
		return e.Hash
	}
	for i, j := 0, 0; i < len(ea) || j < len(eb); {
		var x, y *object.TreeEntry
		switch {
		case j == len(eb):
			x = &ea[i]
		case i == len(ea):
			y = &eb[j]
		default:
			switch c := compareEntries(&ea[i], &eb[j]); {
			case c < 0:
				x = &ea[i]
			case c > 0:
				y = &eb[j]
			default:
				x, y = &ea[i], &eb[j]
			}
		}
		if x != nil {
			i++
		}
		if y != nil {
			j++
		}
		e := x
		if e == nil {
			e = y
		}
		path := dir + e.Name
		if e.Mode == filemode.Dir {
			if err := r.diffTrees(side(x, true), side(y, true), path+"/", out); err != nil {
				return err
			}
		} else if o, n := side(x, false), side(y, false); o != n {
			*out = append(*out, DiffEntry{Path: path, Old: o, New: n})
		}
	}
	return nil
}
