package gitmeta

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openpm/opm/internal/flock"
)

// A go-git fetch saves the packfile it receives by writing pack-<sum>.idx
// in place and then renaming objects/pack/tmp_pack_* to pack-<sum>.pack,
// fsyncing neither; it skips writing an .idx that already exists. A fetch
// killed while writing the .idx leaves a truncated one with no .pack
// (readers ignore it: they list the .pack files), but the next fetch
// usually receives the same pack, keeps the truncated .idx beside it, and
// every read of those objects then fails. BeginFetch and its finish wrap
// a fetch so that neither happens.

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
	before, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		release()
		return nil, fmt.Errorf("fetch: %w", err)
	}
	had := map[string]bool{}
	for _, e := range before {
		had[e.Name()] = true
	}
	for _, e := range before {
		name := e.Name()
		leftover := false
		switch {
		case strings.HasPrefix(name, "pack-") && strings.HasSuffix(name, ".idx"):
			leftover = !had[strings.TrimSuffix(name, ".idx")+".pack"]
		case strings.HasPrefix(name, "tmp_pack_"):
			info, err := e.Info()
			leftover = err == nil && time.Since(info.ModTime()) > tempPackAge
		}
		if leftover {
			slog.Warn("removing what an interrupted fetch left", "file", filepath.Join(dir, name))
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
				release()
				return nil, fmt.Errorf("fetch: %w", err)
			}
			delete(had, name)
		}
	}
	return func() error {
		defer release()
		after, err := os.ReadDir(dir)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return fmt.Errorf("fetch: %w", err)
		}
		wrote := false
		for _, e := range after {
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
	}, nil
}
