// Package registry is opm's registry on one machine: it ties the git
// metadata (gitmeta) to the blob stores (cas) and keeps the invariant that a
// tag is committed only after every blob it names is stored.
//
// The home directory:
//
//	<home>/                     $OPM_HOME, else $XDG_DATA_HOME/opm, else ~/.local/share/opm
//	├── meta.git/               bare git repository, branch main (see gitmeta)
//	│   └── config              git config: opm.blobs = <bucket URL>, remotes, user.name/email
//	├── blobs/
//	│   ├── sha256/<2 hex>/<64 hex>   one read-only file per blob (see cas)
//	│   └── tmp/                ingest in progress; removed on the next start
//	├── index/                  Badger: size, state, last access per digest (a cache)
//	├── gc.lock                 writers hold it shared until their commit, gc exclusively (gclock.go)
//	└── opm.sock                the daemon's control socket, while one runs
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/config"
	formatcfg "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
)

// DefaultHome resolves the home directory from the environment.
func DefaultHome() (string, error) {
	if h := os.Getenv("OPM_HOME"); h != "" {
		return h, nil
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "opm"), nil
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory: set OPM_HOME or use --home: %w", err)
	}
	return filepath.Join(u, ".local", "share", "opm"), nil
}

// Registry is an open home.
type Registry struct {
	Dir    string
	Meta   *gitmeta.Repo
	Local  *cas.Local
	Bucket *cas.Bucket // nil when no bucket is configured
	// Blobs is where content is read and written: the local store, or the
	// local store in front of the bucket.
	Blobs cas.Store
	cache *cas.Cache

	indexMu sync.Mutex
	index   *cas.Index // opened on first use, closed by Close

	lru lruState // the local cache's lifecycle (cache.go)

	// IndexWait is how long to wait for the Badger index when another
	// process holds it.
	IndexWait time.Duration
	// Now is the clock (tests inject it).
	Now func() time.Time
}

// Paths inside the home.
func (r *Registry) MetaDir() string  { return filepath.Join(r.Dir, "meta.git") }
func (r *Registry) BlobDir() string  { return filepath.Join(r.Dir, "blobs") }
func (r *Registry) IndexDir() string { return filepath.Join(r.Dir, "index") }

// Open opens the home at dir, creating it first if needed (idempotent).
func Open(ctx context.Context, dir string) (*Registry, error) {
	if dir == "" {
		return nil, fmt.Errorf("empty home directory: %w", opm.ErrInvalid)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create home: %w", err)
	}
	r := &Registry{Dir: abs, IndexWait: 30 * time.Second, Now: time.Now}
	if r.Meta, err = gitmeta.Init(r.MetaDir()); err != nil {
		return nil, fmt.Errorf("metadata repository %s: %w", r.MetaDir(), err)
	}
	if r.Local, err = cas.OpenLocal(r.BlobDir(), nil); err != nil {
		return nil, err
	}
	r.Blobs = r.Local
	url, key, err := r.blobsURL()
	if err != nil {
		return nil, err
	}
	if url != "" {
		if r.Bucket, err = cas.OpenBucket(ctx, url); err != nil {
			return nil, fmt.Errorf("bucket %s (%s): %w", url, key, err)
		}
		r.cache = cas.NewCache(r.Local, r.Bucket)
		r.Blobs = r.cache
	}
	return r, nil
}

// Close releases the stores.
func (r *Registry) Close() error {
	var errs []error
	if r.Bucket != nil {
		errs = append(errs, r.Bucket.Close())
	}
	errs = append(errs, r.Local.Close())
	r.indexMu.Lock()
	if r.index != nil {
		r.Local.UseIndex(nil)
		errs = append(errs, r.index.Close())
		r.index = nil
	}
	r.indexMu.Unlock()
	return errors.Join(errs...)
}

// EnsureLocal makes a blob local (fetching it from the bucket when there is
// one) so that it can be copied from its file.
func (r *Registry) EnsureLocal(ctx context.Context, d digest.Digest) error {
	if r.Local.Has(d) {
		return nil
	}
	if r.cache == nil {
		return fmt.Errorf("blob %s: %w", d, opm.ErrNotFound)
	}
	return r.cache.Fetch(ctx, d)
}

// Index opens the Badger index on first use (waiting up to IndexWait for
// another process to let it go) and keeps it until Close.
func (r *Registry) Index() (*cas.Index, error) { return r.indexWithin(r.IndexWait) }

// indexWithin is Index waiting at most wait for another process.
func (r *Registry) indexWithin(wait time.Duration) (*cas.Index, error) {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	if r.index == nil {
		idx, err := cas.OpenIndex(r.IndexDir(), wait)
		if err != nil {
			return nil, err
		}
		r.index = idx
		r.Local.UseIndex(idx) // opens, pulls and fetches now note their accesses
	}
	return r.index, nil
}

// recordBlobs notes stored blobs in the Badger index. The index is a cache
// of facts about the files, so a failure here loses nothing: it is logged by
// the caller and the index can be rebuilt.
func (r *Registry) recordBlobs(blobs []opm.Descriptor) error {
	idx, err := r.Index()
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if err := idx.Record(b.Digest, b.Size); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) configFile() string { return filepath.Join(r.MetaDir(), "config") }

func (r *Registry) readConfig() (*formatcfg.Config, error) {
	f, err := os.Open(r.configFile())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return r.decodeConfig(f)
}

// decodeConfig reads the home's git config from rd.
func (r *Registry) decodeConfig(rd io.Reader) (*formatcfg.Config, error) {
	cfg := formatcfg.New()
	if err := formatcfg.NewDecoder(rd).Decode(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", r.configFile(), err)
	}
	return cfg, nil
}

// splitKey splits "section.key" or "section.sub.key".
func splitKey(key string) (section, sub, name string, err error) {
	first := -1
	last := -1
	for i := 0; i < len(key); i++ {
		if key[i] == '.' {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first <= 0 || last == len(key)-1 {
		return "", "", "", fmt.Errorf("config key %q: want section.name (e.g. opm.blobs): %w", key, opm.ErrInvalid)
	}
	section, name = key[:first], key[last+1:]
	if last > first {
		sub = key[first+1 : last]
	}
	return section, sub, name, nil
}

// Config reads one key of the home's git config ("" when unset).
func (r *Registry) Config(key string) (string, error) {
	section, sub, name, err := splitKey(key)
	if err != nil {
		return "", err
	}
	cfg, err := r.readConfig()
	if err != nil {
		return "", err
	}
	s := cfg.Section(section)
	if sub != "" {
		return s.Subsection(sub).Option(name), nil
	}
	return s.Option(name), nil
}

// SetConfig writes one key of the home's git config ("" value unsets it).
func (r *Registry) SetConfig(key, value string) error {
	section, sub, name, err := splitKey(key)
	if err != nil {
		return err
	}
	if err := checkConfig(key, value); err != nil {
		return err
	}
	return r.updateConfig(func(cfg *formatcfg.Config) error {
		s := cfg.Section(section)
		switch {
		case sub != "" && value == "":
			s.Subsection(sub).RemoveOption(name)
		case sub != "":
			s.Subsection(sub).SetOption(name, value)
		case value == "":
			s.RemoveOption(name)
		default:
			s.SetOption(name, value)
		}
		return nil
	})
}

// updateConfig changes the home's git config under git's lock (config.lock):
// concurrent writers, opm or the git CLI, lose no change, and a crash
// leaves the old file or the new one.
func (r *Registry) updateConfig(fn func(*formatcfg.Config) error) error {
	return gitmeta.UpdateFile(context.Background(), r.configFile(), func(old []byte) ([]byte, error) {
		cfg, err := r.decodeConfig(bytes.NewReader(old))
		if err != nil {
			return nil, err
		}
		if err := fn(cfg); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := formatcfg.NewEncoder(&buf).Encode(cfg); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	})
}

type authorEnvKey struct{}

// WithAuthorEnv returns a context whose commits take their author from
// getenv instead of the process's environment: the daemon runs each
// client's command with the client's $GIT_AUTHOR_NAME and $GIT_AUTHOR_EMAIL.
func WithAuthorEnv(ctx context.Context, getenv func(string) string) context.Context {
	return context.WithValue(ctx, authorEnvKey{}, getenv)
}

// Author is who commits: $GIT_AUTHOR_NAME/$GIT_AUTHOR_EMAIL (of the
// environment WithAuthorEnv gave ctx, else of the process), else user.name
// and user.email of the home's config, else of the global git config, else
// "opm" at the host name.
func (r *Registry) Author(ctx context.Context) gitmeta.Signature {
	getenv, ok := ctx.Value(authorEnvKey{}).(func(string) string)
	if !ok {
		getenv = os.Getenv
	}
	name, email := getenv("GIT_AUTHOR_NAME"), getenv("GIT_AUTHOR_EMAIL")
	if name == "" {
		name, _ = r.Config("user.name")
	}
	if email == "" {
		email, _ = r.Config("user.email")
	}
	if name == "" || email == "" {
		if g, err := config.LoadConfig(config.GlobalScope); err == nil {
			if name == "" {
				name = g.User.Name
			}
			if email == "" {
				email = g.User.Email
			}
		}
	}
	if name == "" {
		name = "opm"
	}
	if email == "" {
		host, _ := os.Hostname()
		email = "opm@" + host
	}
	return gitmeta.Signature{Name: name, Email: email, When: r.Now()}
}
