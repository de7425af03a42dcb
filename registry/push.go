package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/layout"
)

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
	// Dereference follows symbolic links instead of keeping them.
	Dereference bool
	// ClampMTime, when not zero, is the latest file time recorded: later
	// ones become it (reproducible builds: --mtime, $SOURCE_DATE_EPOCH).
	ClampMTime time.Time
}

// Progress receives byte counts as content is stored; it may be nil.
type Progress interface {
	Start(files int, bytes int64)
	Add(bytes int64)
	Done()
}

// WithProgress returns ctx whose stores' copies add the bytes they move to
// p (cas.WithProgress); p nil is ctx.
func WithProgress(ctx context.Context, p Progress) context.Context {
	if p == nil {
		return ctx
	}
	return cas.WithProgress(ctx, p.Add)
}

// Push stores the files under paths as the package ref. Every input is
// checked before anything is written; blobs are stored before the tag is
// committed.
func (r *Registry) Push(ctx context.Context, ref opm.Reference, paths []string, opts PushOptions) (*PushResult, error) {
	annotations, progress := opts.Annotations, opts.Progress
	if ref.Tag == "" {
		return nil, opm.Errorf(opm.ErrInvalid, "push %s: needs a :tag, as in opm push %s:v1 PATH…", ref, ref)
	}
	if len(paths) == 0 {
		return nil, opm.Errorf(opm.ErrInvalid, "push %s: no files or directories given", ref)
	}
	sources, skipped, err := scan(paths, scanOptions{Dereference: opts.Dereference, Clamp: opts.ClampMTime})
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
	var up *uploads
	if r.bucket != nil {
		up = r.newUploads(ctx, r.bucket)
		defer func() { up.cancel(); up.wait() }() // none outlives a failed push
	}
	if err := r.ingest(ctx, sources, files, progress, up); err != nil {
		if up != nil {
			// Stop the uploads under way; the first to fail (and so stop
			// the hashing) is the cause.
			up.cancel()
			if uerr := up.wait(); uerr != nil && !errors.Is(uerr, context.Canceled) {
				err = uerr
			}
		}
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
	if err := r.storeBlobs(ctx, m, up); err != nil {
		return nil, err
	}
	res := &PushResult{Ref: ref, Digest: dgst, Files: len(files), Size: m.Size(), SkippedGit: skipped}
	// With an origin: blobs to its bucket, commit, push to its metadata.
	cr, err := r.change(ctx, tagChange{what: ref.String(), paths: []string{layout.TagPath(ref.Repository, ref.Tag)},
		body: body, subject: "push " + ref.String()}, m.Blobs(), opts.Force, "; --force replaces it")
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
// fills in its digest and size, and the chunk list of a big file (hashed
// in the same pass, staged as a blob of its own); each file hashed goes to
// up (when not nil) to be uploaded while the others are hashed. The files
// and lists become durable together, with one flush of the filesystem
// rather than one per file.
func (r *Registry) ingest(ctx context.Context, sources []source, files []opm.File, progress Progress, up *uploads) error {
	batch := r.local.NewBatch()
	if up != nil {
		ctx = up.failed() // a failed upload stops the hashing
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * runtime.GOMAXPROCS(0))
	// The bar moves as files are read (only here: the uploads' reads are
	// not counted again).
	counting := WithProgress(gctx, progress)
	for i := range sources {
		if sources[i].from == "" || sources[i].same >= 0 {
			continue // a link, or a file whose bytes another name brings
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			d, n, chunks, err := batch.IngestFileChunks(counting, sources[i].from)
			if err != nil {
				return fmt.Errorf("%s: %w", sources[i].from, err)
			}
			files[i].Digest, files[i].Size, files[i].Chunks = d, n, chunks
			if up != nil {
				up.add(d, n, func(context.Context) (io.ReadCloser, error) { return batch.Open(d) })
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		batch.Discard()
		return err
	}
	for i, s := range sources {
		if s.same >= 0 { // hard links share one blob
			files[i].Digest, files[i].Size, files[i].Chunks = files[s.same].Digest, files[s.same].Size, files[s.same].Chunks
		}
	}
	return batch.Commit()
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
