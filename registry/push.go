package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
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
	// SkippedGit counts the files of .git directories left out.
	SkippedGit int `json:"skipped_git_files,omitempty"`
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
		return nil, opm.Errorf(opm.ErrInvalid, "push %s: needs a :tag", ref)
	}
	if len(paths) == 0 {
		return nil, opm.Errorf(opm.ErrInvalid, "push %s: no files or directories given", ref)
	}
	sources, skipped, err := scan(paths)
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
	release, err := HoldForWrite(ctx, r.dir) // no gc removes a blob found stored before it is named
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
	res := &PushResult{Ref: ref, Digest: dgst, Files: len(files), Size: m.Size(), SkippedGit: skipped}
	var cr commitResult
	if o, ok, oerr := r.origin(); oerr != nil {
		err = oerr
	} else if ok {
		// Blobs to origin's bucket, commit, push to origin's metadata.
		cr, err = r.publishTag(ctx, o, ref, body, m, "push "+ref.String(), opts.Force)
	} else {
		cr, err = r.setTag(ctx, &guard{}, ref, body, "push "+ref.String(), layout.Facts{})
	}
	if err != nil {
		return nil, err
	}
	res.Commit, res.Previous, res.Committed = cr.commit.String(), cr.previous, cr.committed
	if err := r.recordBlobs(ctx, m.Blobs()); err != nil {
		// The index is a cache; the push itself is complete.
		slog.Warn("blob index not updated", "err", err)
	}
	return res, nil
}

// ingest hashes each regular file into the local store, in parallel, and
// fills in its digest and size. The files become durable together, with
// one flush of the filesystem rather than one per file.
func (r *Registry) ingest(ctx context.Context, sources []source, files []opm.File, progress Progress) error {
	batch := r.local.NewBatch()
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

// Scan turns command-line paths into package files. A directory
// contributes the files beneath it with paths relative to it; a file (or
// symlink) contributes itself under its base name. Special files, links
// that leave the package, unreadable files and two inputs claiming one path
// are refused here, before anything is written.
//
// git's own directories (.git, as opm.IsDotGit sees it) are left out: a
// package never carries one, and pull never writes one. skipped counts the
// files left out so.
func scan(paths []string) (out []source, skipped int, err error) {
	claimed := map[string]string{}
	add := func(pkgPath, full string, fi fs.FileInfo) error {
		if other, ok := claimed[pkgPath]; ok {
			return opm.Errorf(opm.ErrInvalid, "%s and %s both claim the package path %q", other, full, pkgPath)
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
			return opm.Errorf(opm.ErrInvalid, "%s is a %s; only regular files, directories and symlinks can be pushed", full, kind(fi.Mode()))
		}
		return nil
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, 0, fsError(err)
		}
		if !fi.IsDir() {
			if opm.IsDotGit(filepath.Base(p)) {
				skipped++
				continue
			}
			if err := add(path.Clean(filepath.Base(p)), p, fi); err != nil {
				return nil, 0, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(full string, de fs.DirEntry, err error) error {
			if err != nil {
				return fsError(err)
			}
			if full != p && opm.IsDotGit(de.Name()) {
				n, err := countFiles(full)
				skipped += n
				if de.IsDir() && err == nil {
					err = filepath.SkipDir
				}
				return err
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
			return nil, 0, err
		}
	}
	if len(out) == 0 {
		return nil, skipped, opm.Errorf(opm.ErrInvalid, "%v: no files to push (empty directories and .git are not kept)", paths)
	}
	return out, skipped, nil
}

// countFiles counts the files at or below p.
func countFiles(p string) (int, error) {
	n := 0
	err := filepath.WalkDir(p, func(_ string, de fs.DirEntry, err error) error {
		if err != nil {
			return fsError(err)
		}
		if !de.IsDir() {
			n++
		}
		return nil
	})
	return n, err
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

// fsError gives an operating system error its kind (docs/design.md §7):
// a missing file is not found, a refused one a permission error.
func fsError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return opm.WithKind(opm.ErrNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return opm.WithKind(opm.ErrPermission, err)
	}
	return err
}
