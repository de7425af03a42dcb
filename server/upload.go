package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/flock"
)

// Upload sessions: at most maxUploads at once; a session not written to
// for uploadIdle is dropped, by a reaper that looks every reapEvery; its
// bytes are files of the server's own directory,
// <home>/uploads/serve-<random>/, which the server holds (owner.lock) while
// it runs, so that the next server on the home removes the directories of
// servers that died, at once.
const (
	maxUploads = 1024
	uploadIdle = time.Hour
	reapEvery  = time.Minute
	ownerLock  = "owner.lock"
)

// upload is a blob upload session: the bytes so far in a file, hashed as
// they arrive (chunks must come in order, so one running hash suffices).
type upload struct {
	mu   sync.Mutex
	id   string
	repo opm.Repository
	f    *os.File
	h    hash.Hash
	n    int64
	used time.Time // the end of the last request, or the start of the one in progress
}

type uploads struct {
	dir     string
	release func() // the owner lock of dir
	mu      sync.Mutex
	m       map[string]*upload
	stop    chan struct{}
	done    chan struct{}
}

// newUploads makes this server's directory of uploads in parent, after
// removing those of servers that are gone, and starts the reaper.
func newUploads(parent string, log *slog.Logger) (*uploads, error) {
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
	u := &uploads{dir: dir, release: release, m: map[string]*upload{}, stop: make(chan struct{}), done: make(chan struct{})}
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

func (u *uploads) reaper() {
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
func (u *uploads) reap(now time.Time) {
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

func (u *uploads) start(repo opm.Repository) (*upload, error) {
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
	up := &upload{id: id, repo: repo, f: f, h: sha256.New(), used: time.Now()}
	u.m[id] = up
	return up, nil
}

// get returns the session locked; the caller unlocks it.
func (u *uploads) get(repo opm.Repository, id string) (*upload, bool) {
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

// session finds the upload session of rt, locked (the caller unlocks it),
// or answers 404.
func (s *Server) session(w http.ResponseWriter, rt ociRoute) (*upload, bool) {
	up, ok := s.uploads.get(rt.repo, rt.arg)
	if !ok {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "no such upload session")
	}
	return up, ok
}

func (u *uploads) remove(up *upload) {
	up.drop()
	u.mu.Lock()
	delete(u.m, up.id)
	u.mu.Unlock()
}

func (u *uploads) closeAll() error {
	close(u.stop)
	<-u.done
	// A request still holding a session may be about to remove it, which
	// takes u.mu: wait for the sessions with u.mu released.
	u.mu.Lock()
	m := u.m
	u.m = map[string]*upload{}
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

func (up *upload) drop() {
	if up.f != nil {
		up.f.Close()
		os.Remove(up.f.Name())
		up.f = nil
	}
}

// write appends r to the session, hashing it.
func (up *upload) write(r io.Reader) error {
	n, err := io.Copy(io.MultiWriter(up.f, up.h), r)
	up.n += n
	up.used = time.Now()
	return err
}

func (s *Server) location(w http.ResponseWriter, up *upload) {
	w.Header().Set("Location", "/v2/"+up.repo.Path()+"/blobs/uploads/"+up.id)
	w.Header().Set("Docker-Upload-UUID", up.id)
	if up.n > 0 {
		w.Header().Set("Range", fmt.Sprintf("0-%d", up.n-1))
	} else {
		w.Header().Set("Range", "0-0")
	}
}

func (s *Server) blobCreated(w http.ResponseWriter, repo opm.Repository, d digest.Digest) {
	w.Header().Set("Location", "/v2/"+repo.Path()+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.WriteHeader(http.StatusCreated)
}

// startUpload: POST …/blobs/uploads/ — a mount (?mount=&from=), a whole blob
// (?digest=, body), or a new session.
func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		if d, err := opm.ParseDigest(m); err == nil {
			if _, err := s.reg.StatBlob(r.Context(), d); err == nil {
				// Blobs are shared by every repository: the mount is
				// already done, whatever ?from= says.
				s.blobCreated(w, rt.repo, d)
				return
			}
		}
		// Not mountable: fall back to a new session, as the spec asks.
	} else if ds := q.Get("digest"); ds != "" {
		d, err := opm.ParseDigest(ds)
		if err != nil {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
			return
		}
		if err := s.putBlob(r, d); err != nil {
			s.fail(w, r, err, "BLOB_UNKNOWN", "DIGEST_INVALID")
			return
		}
		s.blobCreated(w, rt.repo, d)
		return
	}
	up, err := s.uploads.start(rt.repo)
	if err != nil {
		s.fail(w, r, err, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
		return
	}
	up.mu.Lock()
	s.location(w, up)
	up.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// putBlob stores a whole request body as blob d, verified on the way in.
func (s *Server) putBlob(r *http.Request, d digest.Digest) error {
	if r.ContentLength < 0 {
		// Unknown length: stage it to learn the size.
		if err := os.MkdirAll(s.uploads.dir, 0o755); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(s.uploads.dir, "mono-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		n, err := io.Copy(tmp, r.Body)
		if err != nil {
			return err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return s.reg.PutBlob(r.Context(), d, n, tmp)
	}
	return s.reg.PutBlob(r.Context(), d, r.ContentLength, r.Body)
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	up, ok := s.session(w, rt)
	if !ok {
		return
	}
	defer up.mu.Unlock()
	s.location(w, up)
	w.WriteHeader(http.StatusNoContent)
}

// contentRange parses "start-end" (the spec's form, also with a "bytes "
// prefix).
func contentRange(h string) (start, end int64, err error) {
	h = strings.TrimPrefix(strings.TrimSpace(h), "bytes ")
	h, _, _ = strings.Cut(h, "/")
	a, b, ok := strings.Cut(h, "-")
	if ok {
		start, err = strconv.ParseInt(a, 10, 64)
		if err == nil {
			end, err = strconv.ParseInt(b, 10, 64)
		}
	}
	if !ok || err != nil || start < 0 || end < start {
		return 0, 0, fmt.Errorf("Content-Range %q: want <start>-<end>", h)
	}
	return start, end, nil
}

// errRangeTooBig refuses a Content-Range past the largest blob: its
// arithmetic (end+1) would overflow.
var errRangeTooBig = fmt.Errorf("Content-Range ends past the largest blob, %d bytes", int64(opm.MaxSize))

// chunk appends the request body to the session, checking Content-Range.
// It reports false, having answered, on a refused chunk.
func (s *Server) chunk(w http.ResponseWriter, r *http.Request, up *upload) bool {
	body, want := io.Reader(r.Body), int64(-1) // want: up.n after the chunk
	cr := r.Header.Get("Content-Range")
	if cr != "" {
		start, end, err := contentRange(cr)
		if err != nil {
			writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
			return false
		}
		if end >= opm.MaxSize {
			s.location(w, up)
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", errRangeTooBig.Error())
			return false
		}
		if start != up.n {
			s.location(w, up)
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("chunk starts at %d, the upload has %d bytes", start, up.n))
			return false
		}
		if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
			writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("Content-Range %q but Content-Length %d", cr, r.ContentLength))
			return false
		}
		// A body of unknown length (chunked) must still be the range's
		// length: one byte more than that already tells.
		want = end + 1
		body = io.LimitReader(r.Body, want-up.n+1)
	}
	err := up.write(body)
	if err == nil && want >= 0 && up.n != want {
		err = opm.Errorf(opm.ErrInvalid, "Content-Range %q but the upload now has %d bytes", cr, up.n)
	}
	if err != nil {
		// The file and hash may hold a partial chunk: the session cannot
		// continue consistently.
		s.uploads.remove(up)
		s.fail(w, r, err, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
		return false
	}
	return true
}

func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	up, ok := s.session(w, rt)
	if !ok {
		return
	}
	defer up.mu.Unlock()
	if !s.chunk(w, r, up) {
		return
	}
	s.location(w, up)
	w.WriteHeader(http.StatusAccepted)
}

// finishUpload: PUT …/uploads/<id>?digest= with the last chunk (or none).
// The bytes are verified against the digest before the blob is stored.
func (s *Server) finishUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	d, err := opm.ParseDigest(r.URL.Query().Get("digest"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	up, ok := s.session(w, rt)
	if !ok {
		return
	}
	defer up.mu.Unlock()
	if !s.chunk(w, r, up) {
		return
	}
	if got := digest.NewDigest(digest.SHA256, up.h); got != d {
		s.uploads.remove(up)
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("the %d bytes uploaded hash to %s, not %s", up.n, got, d))
		return
	}
	if _, err := up.f.Seek(0, io.SeekStart); err != nil {
		s.uploads.remove(up)
		s.fail(w, r, err, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
		return
	}
	err = s.reg.PutBlob(r.Context(), d, up.n, up.f)
	s.uploads.remove(up)
	if err != nil {
		s.fail(w, r, err, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
		return
	}
	s.blobCreated(w, rt.repo, d)
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request, rt ociRoute) {
	up, ok := s.session(w, rt)
	if !ok {
		return
	}
	s.uploads.remove(up)
	up.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
