package registry

import (
	"fmt"
	"os"
	"path/filepath"
)

// Paths names every path of one home; no other package joins a home path
// itself. The home, drawn once:
//
//	<home>/                     $OPM_HOME, else $XDG_DATA_HOME/opm, else ~/.local/share/opm
//	├── meta.git/               Meta: bare git repository, branch main (layout: package layout)
//	│   ├── config              git config: opm.blobs, remotes, cache.*, user.name/email (config.go)
//	│   ├── refs/remotes/<r>/main   where remote r's main was last seen
//	│   └── opm-fetch.lock      fetches into the repository take turns (gitmeta)
//	├── blobs/                  Blobs: the local store (package cas)
//	│   ├── sha256/<2 hex>/<64 hex>   one read-only file per blob
//	│   └── tmp/                ingest in progress; what dead writers left goes after 10 min (RemoveLeftovers)
//	├── index/                  Index: Badger: size, state, last access per digest (a cache)
//	├── mirrors/<dst>.git/      Mirror: scratch repository of opm sync SRC DST into remote dst
//	├── uploads/serve-<random>/ Uploads: blob uploads in progress of one HTTP server (upload.go)
//	├── mount/                  the mount's own cache (package opmfs); the registry never reads it
//	│   ├── meta/               MountMeta: one metadata tree per manifest (overlay lower layers)
//	│   ├── tmp/                MountTmp: trees being written; removed at each mount
//	│   └── probe/              MountProbe: what the file system of the home can do
//	├── gc.lock                 GCLock: writers hold it shared until their commit, gc exclusively (gclock.go)
//	├── opm.lock, opm.sock      DaemonLock, Socket: the daemon's lock and control socket, while one runs
//	└── opm.log                 Log: the daemon's log (opm mount --daemon)
type Paths struct{ dir string }

// PathsOf is the layout of the home at dir.
func PathsOf(dir string) Paths { return Paths{dir: dir} }

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

func (p Paths) Dir() string                { return p.dir }
func (p Paths) Meta() string               { return p.join("meta.git") }
func (p Paths) Blobs() string              { return p.join("blobs") }
func (p Paths) Index() string              { return p.join("index") }
func (p Paths) Mirror(dst string) string   { return p.join("mirrors", dst+".git") }
func (p Paths) Uploads() string            { return p.join("uploads") }
func (p Paths) MountMeta() string          { return p.join("mount", "meta") }
func (p Paths) MountTmp() string           { return p.join("mount", "tmp") }
func (p Paths) MountProbe() string         { return p.join("mount", "probe") }
func (p Paths) GCLock() string             { return p.join("gc.lock") }
func (p Paths) DaemonLock() string         { return p.join("opm.lock") }
func (p Paths) Socket() string             { return p.join("opm.sock") }
func (p Paths) Log() string                { return p.join("opm.log") }
func (p Paths) join(elem ...string) string { return filepath.Join(append([]string{p.dir}, elem...)...) }
