package gitmeta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
)

// Change sets or deletes one path.
type Change struct {
	// Path is slash-separated and relative, e.g. "ns/proj/repo/tags/v1.json".
	Path string
	// Data is the file's new content.
	Data []byte
	// Delete removes the file, or the whole directory, at Path; a missing
	// path is not an error. Directories left empty disappear with it.
	Delete bool
}

// Signature names the author (and committer) of a commit.
type Signature struct {
	Name, Email string
	When        time.Time // zero means now
	// Signer, if set, signs the commit (sign.go); a signature that fails
	// fails the commit.
	Signer CommitSigner
	// MaySign, if set, is asked before a commit is signed whether this
	// author may sign it: changes on snap (a registry whose allowed
	// signers would refuse it refuses it first).
	MaySign func(snap *Snapshot, changes []Change) error
}

// maxAttempts bounds how often Update rebuilds its commit after losing the
// race for refs/heads/main to another writer.
const maxAttempts = 50

// flushConcurrency bounds the object files written and fsynced at once.
const flushConcurrency = 8

// Update commits changes on top of the head of main. It reads the head, calls
// fn with its snapshot, writes a commit of fn's changes with fn's message on
// top of it, and publishes it with a compare-and-set on refs/heads/main.
//
// If another process (or the git CLI) moved main in between, Update calls fn
// again with the new head's snapshot; fn may then return an error (for
// example wrapping opm.ErrConflict) to give up, and main is left as it is.
// Updates through one Repo are serialised, so fn must not call Update on it.
//
// If fn's changes leave the tree as it is, nothing is committed: Update
// returns the current head and committed == false. If the commit was
// published but could not be made durable, Update returns it with
// committed == true and the error.
func (r *Repo) Update(ctx context.Context, author Signature, fn func(*Snapshot) ([]Change, Message, error)) (commit plumbing.Hash, committed bool, err error) {
	if err := author.validate(); err != nil {
		return plumbing.ZeroHash, false, err
	}
	select {
	case r.writer <- struct{}{}:
		defer func() { <-r.writer }()
	case <-ctx.Done():
		return plumbing.ZeroHash, false, ctx.Err()
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return plumbing.ZeroHash, false, err
		}
		head, err := r.Head()
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		snap, err := r.Snapshot(head)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		changes, msg, err := fn(snap)
		if err != nil {
			return head, false, err
		}
		commit, err := r.writeCommit(snap, changes, msg, author)
		if err != nil || commit.IsZero() {
			return head, false, err
		}
		published, err := publish(ctx, r.path, Branch, head, commit)
		if published {
			return commit, true, err
		}
		if !errors.Is(err, errRefMoved) {
			return head, false, err
		}
		if attempt+1 == maxAttempts {
			return head, false, opm.Errorf(opm.ErrConflict, "update %s: lost the race %d times", Branch, maxAttempts)
		}
		if err := backoff(ctx, attempt); err != nil {
			return head, false, err
		}
	}
}

// writeCommit writes the objects of a commit of changes on top of snap and
// makes them durable. It returns the zero hash if the changes leave snap's
// tree as it is.
func (r *Repo) writeCommit(snap *Snapshot, changes []Change, msg Message, author Signature) (plumbing.Hash, error) {
	if err := msg.validate(); err != nil {
		return plumbing.ZeroHash, err
	}
	edits, err := newEdits(changes)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	w := &objectWriter{repo: r}
	r.mu.Lock()
	root, err := w.apply(snap.root, edits, "")
	r.mu.Unlock()
	if err != nil || root == snap.root {
		return plumbing.ZeroHash, err
	}
	// Refused before it is signed (a signature may ask ssh-agent, or a
	// touch of a hardware key) and before anything is made durable.
	if author.MaySign != nil {
		if err := author.MaySign(snap, changes); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	r.mu.Lock()
	commit, err := w.commit(snap, root, msg, author)
	r.mu.Unlock()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return commit, w.flush()
}

// edit is the set of changes under one directory (kids) or to one path
// (change).
type edit struct {
	kids   map[string]*edit
	change *Change
}

// newEdits arranges changes as a tree of edits. A later change of the same
// path wins; a path that is both changed and a parent of a changed path is
// refused.
func newEdits(changes []Change) (*edit, error) {
	root := &edit{}
	for i := range changes {
		c := &changes[i]
		parts, err := splitPath(c.Path)
		if err != nil {
			return nil, err
		}
		e := root
		for _, name := range parts {
			if e.change != nil {
				return nil, opm.Errorf(opm.ErrInvalid, "change %s: a parent is changed as a file too", c.Path)
			}
			if e.kids == nil {
				e.kids = make(map[string]*edit)
			}
			kid := e.kids[name]
			if kid == nil {
				kid = &edit{}
				e.kids[name] = kid
			}
			e = kid
		}
		if e.kids != nil {
			return nil, opm.Errorf(opm.ErrInvalid, "change %s: paths below it are changed too", c.Path)
		}
		e.change = c
	}
	return root, nil
}

// splitPath splits a slash-separated relative path into its names.
func splitPath(path string) ([]string, error) {
	parts := strings.Split(path, "/")
	for _, name := range parts {
		if name == "" || name == "." || name == ".." || strings.EqualFold(name, ".git") || strings.IndexByte(name, 0) >= 0 {
			return nil, opm.Errorf(opm.ErrInvalid, "path %q: want relative slash-separated names, none empty, \".\", \"..\" or \".git\"", path)
		}
	}
	return parts, nil
}

// objectWriter collects the new objects of a commit, to be written to disk by
// flush. Its other methods are called with repo.mu held.
type objectWriter struct {
	repo    *Repo
	pending []pendingObject
}

type pendingObject struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	data []byte
}

// apply returns the hash of tree with the edits applied, or the zero hash if
// the result is empty. Only trees along edited paths are read and written;
// every other entry keeps its hash.
func (w *objectWriter) apply(tree plumbing.Hash, e *edit, dir string) (plumbing.Hash, error) {
	entries, err := w.repo.tree(tree)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	entries = slices.Clone(entries) // the cache's copy is shared
	dirty := false
	removed := make(map[int]bool)
	var added []object.TreeEntry
	for name, kid := range e.kids {
		path := dir + name
		i, found := searchEntry(entries, name)
		next := object.TreeEntry{Name: name}
		keep := true
		switch c := kid.change; {
		case c != nil && c.Delete:
			keep = false
		case c != nil:
			if found && entries[i].Mode == filemode.Dir {
				return plumbing.ZeroHash, opm.Errorf(opm.ErrInvalid, "change %s: is a directory", path)
			}
			next.Mode = filemode.Regular
			next.Hash = plumbing.ComputeHash(plumbing.BlobObject, c.Data)
			if !found || entries[i].Hash != next.Hash || entries[i].Mode != next.Mode {
				if next.Hash, err = w.write(plumbing.BlobObject, c.Data); err != nil {
					return plumbing.ZeroHash, err
				}
			}
		default:
			var sub plumbing.Hash
			if found {
				if entries[i].Mode != filemode.Dir {
					return plumbing.ZeroHash, opm.Errorf(opm.ErrInvalid, "change below %s: is a file", path)
				}
				sub = entries[i].Hash
			}
			next.Mode = filemode.Dir
			if next.Hash, err = w.apply(sub, kid, path+"/"); err != nil {
				return plumbing.ZeroHash, err
			}
			keep = !next.Hash.IsZero()
		}
		switch {
		case found && !keep:
			removed[i] = true
			dirty = true
		case found && entries[i] != next:
			entries[i] = next
			dirty = true
		case !found && keep:
			added = append(added, next)
			dirty = true
		}
	}
	if !dirty {
		return tree, nil
	}
	if len(removed) > 0 {
		kept := entries[:0]
		for i, te := range entries {
			if !removed[i] {
				kept = append(kept, te)
			}
		}
		entries = kept
	}
	if len(added) > 0 {
		entries = append(entries, added...)
		slices.SortFunc(entries, func(a, b object.TreeEntry) int { return compareEntries(&a, &b) })
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, nil
	}
	h, err := w.write(plumbing.TreeObject, encodeTree(entries))
	if err == nil {
		w.repo.trees.put(h, entries)
	}
	return h, err
}

// commit writes the commit of root on top of snap's commit.
func (w *objectWriter) commit(snap *Snapshot, root plumbing.Hash, msg Message, author Signature) (plumbing.Hash, error) {
	if root.IsZero() {
		// Everything was deleted: commit the empty tree.
		var err error
		if root, err = w.write(plumbing.TreeObject, nil); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	when := author.When
	if when.IsZero() {
		when = time.Now()
	}
	sig := object.Signature{Name: author.Name, Email: author.Email, When: when}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg.String(), TreeHash: root}
	if !snap.commit.IsZero() {
		c.ParentHashes = []plumbing.Hash{snap.commit}
	}
	if author.Signer != nil {
		var unsigned plumbing.MemoryObject
		if err := c.EncodeWithoutSignature(&unsigned); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("encode commit: %w", err)
		}
		rd, _ := unsigned.Reader()
		data, _ := io.ReadAll(rd)
		sig, err := author.Signer.SignCommit(data)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		c.PGPSignature = sig
	}
	var o plumbing.MemoryObject
	if err := c.Encode(&o); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode commit: %w", err)
	}
	rd, _ := o.Reader()
	data, _ := io.ReadAll(rd) // a MemoryObject's reader does not fail
	return w.write(plumbing.CommitObject, data)
}

// write queues an object of type t with content data and returns its hash.
func (w *objectWriter) write(t plumbing.ObjectType, data []byte) (plumbing.Hash, error) {
	h := plumbing.ComputeHash(t, data)
	w.pending = append(w.pending, pendingObject{h, t, data})
	return h, nil
}

// flush writes the queued objects and makes them durable. The files are
// written and fsynced concurrently, then their directories: on ext4 the
// concurrent fsyncs share journal commits, which makes a commit of 7 objects
// ~40% cheaper than fsyncing one after the other.
func (w *objectWriter) flush() error {
	var mu sync.Mutex
	dirs := make(map[string]bool)
	var g errgroup.Group
	g.SetLimit(flushConcurrency)
	for _, o := range w.pending {
		g.Go(func() error {
			dir, err := writeLoose(w.repo.path, o.hash, o.typ, o.data)
			mu.Lock()
			dirs[dir] = true
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	dirs[filepath.Join(w.repo.path, "objects")] = true // a fan-out directory may be new
	for dir := range dirs {
		g.Go(func() error { return fsync(dir) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("sync objects: %w", err)
	}
	return nil
}

// searchEntry returns the index of the entry called name in entries sorted in
// git order.
func searchEntry(entries []object.TreeEntry, name string) (int, bool) {
	for _, mode := range []filemode.FileMode{filemode.Regular, filemode.Dir} {
		probe := object.TreeEntry{Name: name, Mode: mode}
		if i, ok := slices.BinarySearchFunc(entries, &probe, func(e object.TreeEntry, p *object.TreeEntry) int {
			return compareEntries(&e, p)
		}); ok {
			return i, true
		}
	}
	return 0, false
}

func (s Signature) validate() error {
	for _, v := range []string{s.Name, s.Email} {
		if v == "" || strings.ContainsAny(v, "<>\n\x00") {
			return opm.Errorf(opm.ErrInvalid, "signature %q <%s>: name and email must be non-empty and hold no '<', '>' or newline", s.Name, s.Email)
		}
	}
	return nil
}
