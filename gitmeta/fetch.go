package gitmeta

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"

	"github.com/openpm/opm/internal/flock"
)

// A go-git fetch saves the packfile it receives by writing pack-<sum>.idx
// in place and then renaming objects/pack/tmp_pack_* to pack-<sum>.pack,
// fsyncing neither; it skips writing an .idx that already exists. A fetch
// killed while writing the .idx leaves a truncated one with no .pack
// (readers ignore it: they list the .pack files), but the next fetch
// usually receives the same pack, keeps the truncated .idx beside it, and
// every read of those objects then fails. BeginFetch and its finish wrap
// a fetch so that neither happens, and mend a pack whose .idx does not
// belong to it (left by opm before the lock, or by a power loss before the
// fsync) by indexing the pack again. Every go-git writer into a repository
// of the home must take the lock: one that does not could have the .idx
// it wrote a moment before its .pack removed.

// fetchLockName is the lock opm's fetches into a repository take, so that
// one never takes another's .idx, written a moment before its .pack, for a
// leftover.
const fetchLockName = "opm-fetch.lock"

// tempPackAge is how long a temporary pack must lie unwritten before it is
// a leftover: the git CLI uses the same names for its fetches in progress.
const tempPackAge = 10 * time.Minute

// BeginFetch prepares the repository gitDir for a fetch into it: it waits
// for opm's other fetches into gitDir, then removes what an interrupted one
// left (an .idx without its .pack; temporary packs unwritten for
// tempPackAge). finish, called once the fetch has ended (well or not),
// makes the packs it wrote durable before opm moves main to their commits
// (go-git has written the tracking ref already), and lets the next fetch in.
func BeginFetch(ctx context.Context, gitDir string) (finish func() error, err error) {
	release, err := flock.Lock(ctx, filepath.Join(gitDir, fetchLockName), "fetch lock", flock.Exclusive)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(gitDir, "objects", "pack")
	had, err := tidyPacks(ctx, dir)
	if err != nil {
		release()
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return func() error {
		defer release()
		return syncNewPacks(dir, had)
	}, nil
}

// tidyPacks removes what an interrupted fetch left in the pack directory
// and mends the packs whose .idx is not theirs. It returns the names of
// the files there after it. The caller holds the fetch lock.
func tidyPacks(ctx context.Context, dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	had := map[string]bool{}
	for _, e := range entries {
		had[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		leftover := false
		switch {
		case strings.HasPrefix(name, "pack-") && strings.HasSuffix(name, ".idx"):
			leftover = !had[strings.TrimSuffix(name, ".idx")+".pack"]
		case strings.HasPrefix(name, "tmp_pack_"):
			info, err := e.Info()
			leftover = err == nil && time.Since(info.ModTime()) > tempPackAge
		case strings.HasSuffix(name, ".idx.lock"):
			leftover = true // only mendIndex writes one, under the lock held now
		}
		if leftover {
			slog.Warn("removing what an interrupted fetch left", "file", filepath.Join(dir, name))
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
				return nil, err
			}
			delete(had, name)
		}
	}
	// After the leftovers: a .idx.lock of a mending killed midway is gone.
	for name := range had {
		if strings.HasPrefix(name, "pack-") && strings.HasSuffix(name, ".idx") {
			if err := mendIndex(ctx, dir, strings.TrimSuffix(name, ".idx")+".pack", name); err != nil {
				return nil, err
			}
		}
	}
	return had, nil
}

// syncNewPacks fsyncs the pack files of dir that are not in had, and then
// dir itself if there were any.
func syncNewPacks(dir string, had map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	wrote := false
	for _, e := range entries {
		name := e.Name()
		if had[name] || !strings.HasPrefix(name, "pack-") {
			continue
		}
		if err := fsync(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		wrote = true
	}
	if wrote {
		if err := fsync(dir); err != nil {
			return fmt.Errorf("fetch: sync %s: %w", dir, err)
		}
	}
	return nil
}

// mendIndex checks that the .idx of a pack belongs to it: an .idx ends
// with the checksum of its pack, and a pack with its own. If not, it
// indexes the pack again (fetched packs are never thin: go-git asks for
// whole ones) and replaces the .idx whole (UpdateFile).
func mendIndex(ctx context.Context, dir, pack, idx string) error {
	packSum, err := tail(filepath.Join(dir, pack), 20)
	if err != nil {
		return err
	}
	idxEnd, err := tail(filepath.Join(dir, idx), 40)
	if err == nil && bytes.Equal(idxEnd[:20], packSum) {
		return nil
	}
	slog.Warn("indexing a pack again: its .idx was cut short by an interrupted fetch", "pack", filepath.Join(dir, pack))
	f, err := os.Open(filepath.Join(dir, pack))
	if err != nil {
		return err
	}
	defer f.Close()
	w := new(idxfile.Writer)
	parser, err := packfile.NewParser(packfile.NewScanner(f), w)
	if err != nil {
		return fmt.Errorf("index %s: %w", pack, err)
	}
	if _, err := parser.Parse(); err != nil {
		return fmt.Errorf("index %s (damaged: move it and its .idx out of %s, remove refs/remotes/ of the repository, then sync again): %w", pack, dir, err)
	}
	index, err := w.Index()
	if err != nil {
		return fmt.Errorf("index %s: %w", pack, err)
	}
	return UpdateFile(ctx, filepath.Join(dir, idx), func([]byte) ([]byte, error) {
		var b bytes.Buffer
		if _, err := idxfile.NewEncoder(&b).Encode(index); err != nil {
			return nil, fmt.Errorf("index %s: %w", pack, err)
		}
		return b.Bytes(), nil
	})
}

// tail reads the last n bytes of a file; io.ErrUnexpectedEOF if it is
// shorter.
func tail(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if info.Size() < int64(n) {
		return nil, fmt.Errorf("%s: %w", path, io.ErrUnexpectedEOF)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, info.Size()-int64(n)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}
