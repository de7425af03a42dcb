package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
)

// source is one file of a package-to-be and where its bytes come from.
type source struct {
	file opm.File
	from string // the file on disk; "" for a symlink
}

// PushResult says what a push did.
type PushResult struct {
	Ref       opm.Reference `json:"ref"`
	Digest    digest.Digest `json:"digest"`
	Previous  digest.Digest `json:"previous,omitempty"`
	Commit    string        `json:"commit"`
	Committed bool          `json:"committed"` // false: the tag already pointed at this digest
	Files     int           `json:"files"`
	Size      int64         `json:"size"`
}

// PushOptions are the choices of a push beyond its reference and paths.
type PushOptions struct {
	Annotations map[string]string // manifest annotations
	Progress    Progress          // may be nil
	// Force: with an origin, on a lost race replace a tag another writer
	// changed instead of failing with opm.ErrConflict.
	Force bool
}

// Progress receives byte counts as content is stored; it may be nil.
type Progress interface {
	Start(files int, bytes int64)
	Add(bytes int64)
	Done()
}

// Push stores the files under paths as the package ref. Every input is
// checked before anything is written; blobs are stored before the tag is
// committed.
func (r *Registry) Push(ctx context.Context, ref opm.Reference, paths []string, opts PushOptions) (*PushResult, error) {
	annotations, progress := opts.Annotations, opts.Progress
	if ref.Tag == "" {
		return nil, fmt.Errorf("push %s: needs a :tag: %w", ref, opm.ErrInvalid)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("push %s: no files or directories given: %w", ref, opm.ErrInvalid)
	}
	sources, err := Scan(paths)
	if err != nil {
		return nil, err
	}
	// Check names and paths before any byte is stored (the digests are
	// not known yet: stand-ins take their place for the check).
	files := make([]opm.File, len(sources))
	var total int64
	for i, s := range sources {
		files[i] = s.file
		files[i].Digest = opm.EmptyFileDigest
		total += s.file.Size
	}
	if _, err := opm.NewPackage(files, annotations); err != nil {
		return nil, err
	}
	if progress != nil {
		progress.Start(len(sources), total)
		defer progress.Done()
	}
	release, err := HoldForWrite(ctx, r.Dir) // no gc removes a blob found stored before it is named
	if err != nil {
		return nil, err
	}
	defer release()
	if err := r.ingest(ctx, sources, files, progress); err != nil {
		return nil, err
	}
	m, err := opm.NewPackage(files, annotations)
	if err != nil {
		return nil, err
	}
	body, dgst, err := m.Encode()
	if err != nil {
		return nil, err
	}
	if err := r.storeBlobs(ctx, m); err != nil {
		return nil, err
	}
	res := &PushResult{Ref: ref, Digest: dgst, Files: len(files), Size: m.Size()}
	var commit plumbing.Hash
	var prev digest.Digest
	var committed bool
	if o, ok, oerr := r.origin(); oerr != nil {
		err = oerr
	} else if ok {
		// Blobs to origin's bucket, commit, push to origin's metadata.
		commit, prev, committed, err = r.publishTag(ctx, o, ref, body, m, "push "+ref.String(), opts.Force)
	} else {
		commit, prev, committed, err = r.setTag(ctx, ref, body, "push "+ref.String(), nil)
	}
	if err != nil {
		return nil, err
	}
	res.Commit, res.Previous, res.Committed = commit.String(), prev, committed
	if err := r.recordBlobs(m.Blobs()); err != nil {
		// The index is a cache; the push itself is complete.
		slog.Warn("blob index not updated", "err", err)
	}
	return res, nil
}

// ingest hashes each regular file into the local store, in parallel, and
// fills in its digest and size. The files become durable together, with
// one flush of the filesystem rather than one per file.
func (r *Registry) ingest(ctx context.Context, sources []source, files []opm.File, progress Progress) error {
	batch := r.Local.NewBatch()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * runtime.GOMAXPROCS(0))
	for i := range sources {
		if sources[i].from == "" {
			continue
		}
		g.Go(func() error {
			d, n, err := batch.IngestFile(ctx, sources[i].from)
			if err != nil {
				return fmt.Errorf("%s: %w", sources[i].from, err)
			}
			files[i].Digest, files[i].Size = d, n
			if progress != nil {
				progress.Add(n)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		batch.Discard()
		return err
	}
	return batch.Commit()
}

// storeBlobs puts the blobs a manifest names that are not yet in the
// registry's copy: the config and empty-file blobs into the local store, and
// everything into the bucket when there is one.
func (r *Registry) storeBlobs(ctx context.Context, m *opm.Manifest) error {
	for _, small := range [][]byte{opm.EmptyJSON, nil} {
		d := digest.FromBytes(small)
		if err := r.Local.Put(ctx, d, int64(len(small)), bytes.NewReader(small)); err != nil {
			return err
		}
	}
	if r.Bucket == nil {
		return nil
	}
	return r.uploadBlobs(ctx, r.Bucket, m.Blobs())
}

// setTag commits body as the tag file of ref. Replayed on a new head after a
// lost race, it fails with ErrConflict if the tag itself changed in between.
// It makes no commit when the tag already holds body.
func (r *Registry) setTag(ctx context.Context, ref opm.Reference, body []byte, subject string, extra []gitmeta.Trailer) (plumbing.Hash, digest.Digest, bool, error) {
	p := opm.TagPath(ref.Repository, ref.Tag)
	dgst := digest.FromBytes(body)
	var seen *digest.Digest // the tag's value on the first attempt
	var prev digest.Digest
	commit, committed, err := r.Meta.Update(ctx, r.Author(ctx), func(s *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		cur, err := tagDigest(s, p)
		if err != nil {
			return nil, gitmeta.Message{}, err
		}
		if seen == nil {
			seen = &cur
		} else if cur != *seen {
			return nil, gitmeta.Message{}, fmt.Errorf("%s was changed by another writer while this one ran (now %s): %w", ref, orNone(cur), opm.ErrConflict)
		}
		prev = cur
		if cur == dgst {
			return nil, gitmeta.Message{Subject: subject}, nil // no commit
		}
		msg := gitmeta.Message{Subject: subject, Trailers: []gitmeta.Trailer{{Key: "Opm-Digest", Value: dgst.String()}}}
		if cur != "" {
			msg.Trailers = append(msg.Trailers, gitmeta.Trailer{Key: "Opm-Previous", Value: cur.String()})
		}
		msg.Trailers = append(msg.Trailers, extra...)
		return []gitmeta.Change{{Path: p, Data: body}}, msg, nil
	})
	return commit, prev, committed, err
}

func orNone(d digest.Digest) string {
	if d == "" {
		return "removed"
	}
	return d.String()
}

// tagDigest is the digest of a tag file's bytes, "" when there is none.
func tagDigest(s *gitmeta.Snapshot, p string) (digest.Digest, error) {
	b, err := s.ReadFile(p)
	if errors.Is(err, opm.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

// Scan turns command-line paths into package files. A directory
// contributes the files beneath it with paths relative to it; a file (or
// symlink) contributes itself under its base name. Special files, links
// that leave the package, unreadable files and two inputs claiming one path
// are refused here, before anything is written.
func Scan(paths []string) ([]source, error) {
	var out []source
	claimed := map[string]string{}
	add := func(pkgPath, full string, fi fs.FileInfo) error {
		if other, ok := claimed[pkgPath]; ok {
			return fmt.Errorf("%s and %s both claim the package path %q: %w", other, full, pkgPath, opm.ErrInvalid)
		}
		claimed[pkgPath] = full
		if err := opm.ValidatePath(pkgPath); err != nil {
			return fmt.Errorf("%s: %w", full, err)
		}
		f := opm.File{Path: pkgPath, Mode: fi.Mode().Perm()}
		switch {
		case fi.Mode().IsRegular():
			if err := unix.Access(full, unix.R_OK); err != nil {
				return fsError(&fs.PathError{Op: "open", Path: full, Err: err})
			}
			f.Size = fi.Size()
			out = append(out, source{file: f, from: full})
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return fsError(err)
			}
			if err := opm.ValidateSymlink(pkgPath, target); err != nil {
				return fmt.Errorf("%s: %w", full, err)
			}
			f.Symlink, f.Digest, f.Mode = target, opm.EmptyFileDigest, 0o777
			out = append(out, source{file: f})
		default:
			return fmt.Errorf("%s is a %s; only regular files, directories and symlinks can be pushed: %w", full, kind(fi.Mode()), opm.ErrInvalid)
		}
		return nil
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fsError(err)
		}
		if !fi.IsDir() {
			if err := add(path.Clean(filepath.Base(p)), p, fi); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(full string, de fs.DirEntry, err error) error {
			if err != nil {
				return fsError(err)
			}
			if de.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(p, full)
			if err != nil {
				return err
			}
			fi, err := de.Info()
			if err != nil {
				return fsError(err)
			}
			return add(filepath.ToSlash(rel), full, fi)
		})
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%v: no files to push (empty directories are not kept): %w", paths, opm.ErrInvalid)
	}
	return out, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// fsError gives an os error a sentinel the CLI maps to an exit code.
func fsError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", err, opm.ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", err, opm.ErrInvalid)
	}
	return err
}
