package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/flock"
)

// Blob upload sessions (the OCI distribution API's chunked uploads), which
// an HTTP server streams into: at most maxUploads at once; a session not
// written to for uploadIdle is dropped, by a reaper that looks every
// reapEvery. Their bytes are files of the server's own directory,
// <home>/uploads/serve-<random>/, which the server holds (owner.lock) while
// it runs, so that the next server on the home removes at once the
// directories of servers that died.
const (
	maxUploads = 1024
	uploadIdle = time.Hour
	reapEvery  = time.Minute
	ownerLock  = "owner.lock"
)

// Upload is one blob upload session: the bytes so far in a file, hashed as
// they arrive (chunks come in order, so one running hash suffices). A
// session is used by one request at a time: Uploads.Start and Uploads.Get
// return it held, and Release lets it go.
type Upload struct {
	mu   sync.Mutex
	u    *Uploads
	id   string
	repo opm.Repository
	f    *os.File
	h    hash.Hash
	n    int64
	used time.Time // the end of the last request, or the start of the one in progress
}

// Uploads are the upload sessions of one server.
type Uploads struct {
	r       *Registry
	dir     string
	release func() // the owner lock of dir
	mu      sync.Mutex
	m       map[string]*Upload
	stop    chan struct{}
	done    chan struct{}
}

// Uploads makes a server's directory of uploads, after removing those of
// servers that are gone, and starts the reaper. Close drops the sessions
// and the directory.
func (r *Registry) Uploads(log *slog.Logger) (*Uploads, error) {
	return newUploads(r, r.Paths().Uploads(), log)
}

func newUploads(r *Registry, parent string, log *slog.Logger) (*Uploads, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	if old, err := os.ReadDir(parent); err == nil {
		for _, e := range old {
			if dir := filepath.Join(parent, e.Name()); e.IsDir() && ownerGone(dir) {
				if err := os.RemoveAll(dir); err != nil {
					log.Warn("uploads of a server that is gone not removed", "dir", dir, "err", err)
				}
			}
		}
	}
	dir, err := os.MkdirTemp(parent, "serve-")
	if err != nil {
		return nil, err
	}
	release, ok, err := flock.Try(filepath.Join(dir, ownerLock), flock.Exclusive)
	if err != nil || !ok {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("uploads directory %s: cannot take its owner lock: %v", dir, err)
	}
	u := &Uploads{r: r, dir: dir, release: release, m: map[string]*Upload{}, stop: make(chan struct{}), done: make(chan struct{})}
	go u.reaper()
	return u, nil
}

// ownerGone reports whether the server that made the uploads directory dir
// is gone: no process holds its owner lock (a directory from before owner
// locks counts once idle for uploadIdle).
func ownerGone(dir string) bool {
	lock := filepath.Join(dir, ownerLock)
	if _, err := os.Stat(lock); err != nil {
		fi, err := os.Stat(dir)
		return err == nil && time.Since(fi.ModTime()) > uploadIdle
	}
	release, ok, err := flock.Try(lock, flock.Exclusive)
	if err != nil || !ok {
		return false
	}
	release()
	return true
}

func (u *Uploads) reaper() {
	defer close(u.done)
	t := time.NewTicker(reapEvery)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case now := <-t.C:
			u.reap(now)
		}
	}
}

// reap drops the sessions not written to for uploadIdle. A session a
// request holds is written to (the minimum rate of a body sees to it) and
// is looked at again next time.
func (u *Uploads) reap(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, up := range u.m {
		if up.mu.TryLock() {
			if now.Sub(up.used) > uploadIdle {
				up.drop()
				delete(u.m, id)
			}
			up.mu.Unlock()
		}
	}
}

// Start opens a new session for repo, held (see Upload). More than
// maxUploads at once fail with opm.ErrTooMany.
func (u *Uploads) Start(repo opm.Repository) (*Upload, error) {
	u.reap(time.Now())
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) >= maxUploads {
		return nil, opm.Errorf(opm.ErrTooMany, "%d uploads in progress; try again later", len(u.m))
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.MkdirAll(u.dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(u.dir, id))
	if err != nil {
		return nil, err
	}
	up := &Upload{u: u, id: id, repo: repo, f: f, h: sha256.New(), used: time.Now()}
	up.mu.Lock()
	u.m[id] = up
	return up, nil
}

// Get finds repo's session id and holds it; false if there is none (or it
// finished or was dropped meanwhile).
func (u *Uploads) Get(repo opm.Repository, id string) (*Upload, bool) {
	u.mu.Lock()
	up, ok := u.m[id]
	u.mu.Unlock()
	if !ok || up.repo != repo {
		return nil, false
	}
	up.mu.Lock()
	if up.f == nil { // finished or cancelled meanwhile
		up.mu.Unlock()
		return nil, false
	}
	up.used = time.Now()
	return up, true
}

// Close drops every session and removes the server's directory.
func (u *Uploads) Close() error {
	close(u.stop)
	<-u.done
	// A request still holding a session may be about to remove it, which
	// takes u.mu: wait for the sessions with u.mu released.
	u.mu.Lock()
	m := u.m
	u.m = map[string]*Upload{}
	u.mu.Unlock()
	for _, up := range m {
		up.mu.Lock()
		up.drop()
		up.mu.Unlock()
	}
	err := os.RemoveAll(u.dir)
	u.release()
	return err
}

// PutWhole stores the blob d sent whole (a monolithic upload), verified on
// the way in. A size below zero is not known: the bytes are staged in the
// server's directory first to learn it.
func (u *Uploads) PutWhole(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	if size >= 0 {
		return u.r.PutBlob(ctx, d, size, r)
	}
	if err := os.MkdirAll(u.dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(u.dir, "mono-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, r)
	if err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return u.r.PutBlob(ctx, d, n, tmp)
}

// ID names the session in its URL.
func (up *Upload) ID() string { return up.id }

// Repo is the repository the session uploads to.
func (up *Upload) Repo() opm.Repository { return up.repo }

// Size is the number of bytes received so far.
func (up *Upload) Size() int64 { return up.n }

// Release lets the session go, for the next request.
func (up *Upload) Release() { up.mu.Unlock() }

// Write appends r to the session, hashing it.
func (up *Upload) Write(r io.Reader) error {
	n, err := io.Copy(io.MultiWriter(up.f, up.h), r)
	up.n += n
	up.used = time.Now()
	return err
}

// Finish stores the bytes received as the blob d, once they hash to d
// (else opm.ErrDigestInvalid), and ends the session either way; the
// session stays held (Release it).
func (up *Upload) Finish(ctx context.Context, d digest.Digest) error {
	defer up.Remove()
	if got := digest.NewDigest(digest.SHA256, up.h); got != d {
		return opm.Errorf(opm.ErrDigestInvalid, "the %d bytes uploaded hash to %s, not %s", up.n, got, d)
	}
	if _, err := up.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return up.u.r.PutBlob(ctx, d, up.n, up.f)
}

// Remove ends the session, dropping its bytes; it stays held (Release it).
func (up *Upload) Remove() {
	up.drop()
	up.u.mu.Lock()
	delete(up.u.m, up.id)
	up.u.mu.Unlock()
}

func (up *Upload) drop() {
	if up.f != nil {
		up.f.Close()
		os.Remove(up.f.Name())
		up.f = nil
	}
}
