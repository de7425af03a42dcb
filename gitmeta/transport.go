package gitmeta

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/openpm/opm"
)

// Git transport: a repository's main fetched from a remote and pushed to
// one, and the remote-tracking refs that record where a remote's main was
// last seen. Every fetch takes the fetch lock (BeginFetch); every ref this
// package writes goes through git's lock-file protocol (publish).

// ErrRemoteMoved reports a push that lost the race: the remote's main is no
// longer the commit the pushed one was built on.
var ErrRemoteMoved = opm.Errorf(opm.ErrConflict, "the remote's main moved")

// TrackingRef is the ref that holds a remote's main as last fetched:
// refs/remotes/<name>/main.
func TrackingRef(name string) plumbing.ReferenceName {
	return plumbing.ReferenceName("refs/remotes/" + name + "/main")
}

// Fetch fetches main of the git repository at url into the ref into and
// returns the commit it names, zero if the remote has no main yet (see
// FetchChecked, with no check).
func (r *Repo) Fetch(ctx context.Context, url string, into plumbing.ReferenceName) (plumbing.Hash, error) {
	return r.FetchChecked(ctx, url, into, nil)
}

// FetchChecked fetches main of the git repository at url and returns the
// commit it names, zero if the remote has no main yet. go-git writes the
// objects as a packfile, which this Repo finds when it next reads the pack
// indexes; a pack with an object over MaxObjectSize is refused before
// go-git inflates it (checkPack). The commit is then handed to check (when
// not nil) and only if it passes does the ref into name it: a refused
// fetch leaves into as it was, and returns the commit with check's error.
func (r *Repo) FetchChecked(ctx context.Context, url string, into plumbing.ReferenceName, check func(plumbing.Hash) error) (plumbing.Hash, error) {
	fetched, err := r.fetchMain(ctx, url, into)
	if err != nil || fetched.IsZero() {
		return fetched, err
	}
	if check != nil {
		if err := check(fetched); err != nil {
			return fetched, err
		}
	}
	return fetched, r.setRef(ctx, into, fetched)
}

// fetchMain fetches main of the git repository at url into a staging ref
// beside into (go-git writes it; it is removed before the fetch lock is
// let go) and returns the commit it named.
func (r *Repo) fetchMain(ctx context.Context, url string, into plumbing.ReferenceName) (plumbing.Hash, error) {
	finish, err := BeginFetch(ctx, r.path)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	dropBrokenTrackingRefs(r.path)
	staging := plumbing.ReferenceName(string(into) + "-fetching")
	stagingFile := filepath.Join(r.path, filepath.FromSlash(string(staging)))
	os.Remove(stagingFile) // left by a fetch killed midway
	rem := gogit.NewRemote(checkedPacks{openStorage(r.path, cache.NewObjectLRUDefault())}, &config.RemoteConfig{Name: "opm", URLs: []string{url}})
	err = rem.FetchContext(ctx, &gogit.FetchOptions{
		RemoteName: "opm",
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + string(Branch) + ":" + string(staging))},
		Tags:       gogit.NoTags,
	})
	fetched := plumbing.ZeroHash
	if err == nil || errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		fetched, err = readRef(r.path, staging)
	}
	os.Remove(stagingFile)
	// The packs are durable before any ref names their commits.
	if ferr := finish(); ferr != nil && err == nil {
		err = ferr
	}
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrEmptyRemoteRepository), errors.Is(err, gogit.NoMatchingRefSpecError{}):
		return plumbing.ZeroHash, nil
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return plumbing.ZeroHash, opm.Errorf(opm.ErrNotFound, "fetch %s: %w", url, err)
	default:
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", url, err)
	}
	return fetched, nil
}

// transportRepo opens a go-git handle of the repository for a fetch or a
// push: its own storage, so that the network round trips do not hold r's
// lock (the objects it writes are found when r next reads the pack
// indexes).
func (r *Repo) transportRepo() (*gogit.Repository, error) {
	repo, err := gogit.Open(openStorage(r.path, cache.NewObjectLRUDefault()), nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r.path, err)
	}
	return repo, nil
}

// dropBrokenTrackingRefs removes the tracking refs (refs/remotes/…) whose
// file holds no hash, and the lock files there. go-git rewrites a ref file
// in place (truncate, then write): a process killed in between leaves it
// empty, and every later fetch would then fail with "ref file is empty". A
// tracking ref only records where a remote's main was; the fetch writes it
// again. A lock file there was left by an interrupted SetTracking: the
// caller holds the fetch lock, which SetTracking holds while it writes.
func dropBrokenTrackingRefs(gitDir string) {
	filepath.WalkDir(filepath.Join(gitDir, "refs", "remotes"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if strings.HasSuffix(p, ".lock") {
			slog.Warn("removing a lock file left by an interrupted tracking ref update", "file", p)
			os.Remove(p)
			return nil
		}
		b, err := os.ReadFile(p)
		if s := strings.TrimSpace(string(b)); err == nil && !plumbing.IsHash(s) && !strings.HasPrefix(s, "ref: ") {
			slog.Warn("removing a broken tracking ref (left by an interrupted fetch)", "ref", p, "content", s)
			os.Remove(p)
		}
		return nil
	})
}

// SetTracking records that the remote's main holds commit (as a fetch
// would).
func (r *Repo) SetTracking(ctx context.Context, remote string, commit plumbing.Hash) error {
	return r.setRef(ctx, TrackingRef(remote), commit)
}

// setRef makes the ref name (a tracking ref) hold commit: it is written
// with git's lock-file protocol while holding the fetch lock, so that
// neither a fetch nor another writer interleaves.
func (r *Repo) setRef(ctx context.Context, name plumbing.ReferenceName, commit plumbing.Hash) error {
	finish, err := BeginFetch(ctx, r.path)
	if err != nil {
		return err
	}
	defer finish()
	dropBrokenTrackingRefs(r.path)
	for attempt := 0; ; attempt++ {
		cur, err := readRef(r.path, name)
		if err != nil {
			// A ref left unreadable is replaced.
			cur = plumbing.ZeroHash
			os.Remove(filepath.Join(r.path, filepath.FromSlash(string(name))))
		}
		if cur == commit {
			return nil
		}
		_, err = publish(ctx, r.path, name, cur, commit)
		if !errors.Is(err, errRefMoved) || attempt == maxAttempts {
			return err
		}
	}
}

// Tracking returns the remote's main as last fetched, zero if never.
func (r *Repo) Tracking(remote string) (plumbing.Hash, error) {
	return readRef(r.path, TrackingRef(remote))
}

// VerifiedRef is the ref that holds the last commit of a remote's main
// whose signatures were verified (VerifyHistory): refs/remotes/<name>/verified.
func VerifiedRef(name string) plumbing.ReferenceName {
	return plumbing.ReferenceName("refs/remotes/" + name + "/verified")
}

// Verified returns the last verified commit of the remote's main, zero if
// none.
func (r *Repo) Verified(remote string) (plumbing.Hash, error) {
	return readRef(r.path, VerifiedRef(remote))
}

// SetVerified records commit as the last verified one of the remote's main.
func (r *Repo) SetVerified(ctx context.Context, remote string, commit plumbing.Hash) error {
	return r.setRef(ctx, VerifiedRef(remote), commit)
}

// ForgetVerified forgets what of the remote's main was verified.
func (r *Repo) ForgetVerified(ctx context.Context, remote string) error {
	return r.removeRefs(ctx, VerifiedRef(remote))
}

// RemoveTracking forgets where the remote's main was seen, and what of it
// was verified.
func (r *Repo) RemoveTracking(ctx context.Context, remote string) error {
	return r.removeRefs(ctx, TrackingRef(remote), VerifiedRef(remote))
}

// removeRefs deletes refs, loose or packed (a git gc packs them), under
// the fetch lock as setRef writes them; a ref that is not there is no
// error.
func (r *Repo) removeRefs(ctx context.Context, names ...plumbing.ReferenceName) error {
	finish, err := BeginFetch(ctx, r.path)
	if err != nil {
		return err
	}
	defer finish()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range names {
		if err := r.st.RemoveReference(name); err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	return nil
}

// Push makes main of the git repository at url the commit `commit` of this
// repository. old is the remote's main the commit was built on: if the push
// is refused and the remote's main is no longer old, Push fails with
// ErrRemoteMoved. Unless force, the update must be a fast-forward.
func (r *Repo) Push(ctx context.Context, url string, old, commit plumbing.Hash, force bool) error {
	if old == commit {
		return nil
	}
	repo, err := r.transportRepo()
	if err != nil {
		return err
	}
	rem := gogit.NewRemote(repo.Storer, &config.RemoteConfig{Name: "opm", URLs: []string{url}})
	spec := commit.String() + ":" + string(Branch)
	if force {
		spec = "+" + spec
	}
	err = rem.PushContext(ctx, &gogit.PushOptions{RemoteName: "opm", RefSpecs: []config.RefSpec{config.RefSpec(spec)}})
	if err == nil || errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return nil
	}
	// Tell a lost race from a failure: where is the remote's main now?
	refs, lerr := rem.ListContext(ctx, &gogit.ListOptions{})
	var now plumbing.Hash
	if lerr == nil {
		for _, ref := range refs {
			if ref.Name() == Branch {
				now = ref.Hash()
			}
		}
	}
	if lerr == nil && now == commit {
		return nil
	}
	if lerr == nil && now != old {
		return fmt.Errorf("push %s: %w", url, ErrRemoteMoved)
	}
	return fmt.Errorf("push %s: %w", url, err)
}

// CheckRemote asks the git repository at url for its refs (one round trip,
// what a fetch starts with), so that a URL that names no repository is said
// at once: an opm.ErrNotFound error. An empty repository is fine.
func CheckRemote(ctx context.Context, url string) error {
	rem := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "opm", URLs: []string{url}})
	_, err := rem.ListContext(ctx, &gogit.ListOptions{})
	switch {
	case err == nil, errors.Is(err, transport.ErrEmptyRemoteRepository):
		return nil
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return opm.Errorf(opm.ErrNotFound, "%s is not a git repository (make one with git init --bare)", url)
	}
	return fmt.Errorf("%s: %w", url, err)
}
