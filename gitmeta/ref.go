package gitmeta

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// staleLock is the age after which a ref lock file is taken to be left behind
// by a crashed writer and is removed. Writers hold the lock for milliseconds.
const staleLock = 10 * time.Second

// errRefMoved reports a lost compare-and-set: the ref no longer holds the
// value the new commit was built on.
var errRefMoved = errors.New("ref moved")

// publish moves the ref name from old to new with git's own lock-file
// protocol, the one the git CLI uses, so that it is safe against other
// processes and against git itself:
//
//  1. create <ref>.lock with O_CREATE|O_EXCL (waiting while another writer
//     holds it, and removing it if it is older than staleLock);
//  2. check that the ref (loose file, else packed-refs) still equals old,
//     else fail with errRefMoved;
//  3. write the new hash into the lock file, fsync it, and rename it over the
//     ref, then fsync the directory so the rename is durable.
//
// Readers see either the old file or the new one, never a partial write. The
// lock file is removed on every failure path.
//
// go-git's dotgit.SetRef is not used: it opens the ref file itself, takes an
// flock, truncates and rewrites it in place. A concurrent reader (go-git's
// or the git CLI's) can see an empty or partial ref, a crash can leave it
// empty, nothing is fsynced, and the git CLI neither takes nor respects the
// flock, so a `git update-ref` or `git push` into the repository could
// interleave with it.
//
// published reports whether the rename happened: if it did and err is not
// nil, the ref moved but the directory could not be synced.
func publish(ctx context.Context, gitDir string, name plumbing.ReferenceName, old, new plumbing.Hash) (published bool, err error) {
	ref := filepath.Join(gitDir, filepath.FromSlash(string(name)))
	if err := os.MkdirAll(filepath.Dir(ref), 0o777); err != nil {
		return false, fmt.Errorf("update %s: %w", name, err)
	}
	lock := ref + ".lock"
	f, err := lockFile(ctx, lock)
	if err != nil {
		return false, fmt.Errorf("update %s: %w", name, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(lock)
		}
	}()
	cur, err := readRef(gitDir, name)
	if err != nil {
		return false, err
	}
	if cur != old {
		return false, fmt.Errorf("update %s: expected %s, found %s: %w", name, old, cur, errRefMoved)
	}
	if _, err := f.WriteString(new.String() + "\n"); err != nil {
		return false, fmt.Errorf("update %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("update %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("update %s: %w", name, err)
	}
	if err := os.Rename(lock, ref); err != nil {
		return false, fmt.Errorf("update %s: %w", name, err)
	}
	renamed = true
	if err := fsync(filepath.Dir(ref)); err != nil {
		return true, fmt.Errorf("update %s: published but not synced: %w", name, err)
	}
	return true, nil
}

// lockFile creates path exclusively, waiting with a jittered backoff while it
// exists and breaking it once it is older than staleLock.
func lockFile(ctx context.Context, path string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) > staleLock {
			// Left by a crashed writer. Removing it races only with another
			// process breaking the same stale lock at the same instant.
			os.Remove(path)
			continue
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, fmt.Errorf("%s is held by another writer: %w", filepath.Base(path), err)
		}
	}
}

// backoff sleeps about 1ms·2^attempt (capped at 64ms), jittered by ±50%, or
// until ctx is done.
func backoff(ctx context.Context, attempt int) error {
	d := time.Millisecond << min(attempt, 6)
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readRef returns the hash the ref name holds: its loose file if there is one,
// else its line in packed-refs, else the zero hash. Loose refs are replaced by
// rename and git writes packed-refs before it deletes the loose file it packs,
// so this order never misses a ref.
func readRef(gitDir string, name plumbing.ReferenceName) (plumbing.Hash, error) {
	data, err := os.ReadFile(filepath.Join(gitDir, filepath.FromSlash(string(name))))
	if err == nil {
		return parseHash(name, strings.TrimSpace(string(data)))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return plumbing.ZeroHash, fmt.Errorf("read %s: %w", name, err)
	}
	data, err = os.ReadFile(filepath.Join(gitDir, "packed-refs"))
	if errors.Is(err, fs.ErrNotExist) {
		return plumbing.ZeroHash, nil
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read packed-refs: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		hash, ref, ok := strings.Cut(sc.Text(), " ")
		if ok && ref == string(name) {
			return parseHash(name, hash)
		}
	}
	return plumbing.ZeroHash, nil
}

func parseHash(name plumbing.ReferenceName, s string) (plumbing.Hash, error) {
	if len(s) != 40 || !isHex(s) {
		return plumbing.ZeroHash, fmt.Errorf("read %s: not a commit hash: %q", name, s)
	}
	return plumbing.NewHash(s), nil
}

// fsync flushes a file, or a directory (making the renames into it
// durable), to disk.
func fsync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
