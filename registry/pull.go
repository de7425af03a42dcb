package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
)

// PullResult says what a pull wrote.
type PullResult struct {
	Ref    opm.Reference `json:"ref"`
	Digest string        `json:"digest"`
	Dir    string        `json:"dir"`
	Files  int           `json:"files"`
	Size   int64         `json:"size"`
}

// Pull writes the files of a package into dir. Every path is confined to
// dir (an os.Root: no "..", no symlink followed out of it); an existing file
// is replaced only with force; each file is written to a temporary name,
// verified byte for byte against its digest, and only then renamed to its
// final name.
func (r *Registry) Pull(ctx context.Context, ref opm.Reference, dir string, force bool, progress Progress) (*PullResult, error) {
	p, err := r.Resolve(ref)
	if err != nil {
		return nil, err
	}
	files := p.Manifest.Files()
	total, err := r.writeFiles(ctx, files, dir, force, progress)
	if err != nil {
		return nil, err
	}
	return &PullResult{Ref: ref, Digest: p.Digest.String(), Dir: dir, Files: len(files), Size: total}, nil
}

// writeFiles writes the files of a package, as opm.ParseManifest checked
// them, into dir (see Pull) and returns their total size.
func (r *Registry) writeFiles(ctx context.Context, files []opm.File, dir string, force bool, progress Progress) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("output directory: %w", fsError(err))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, fmt.Errorf("output directory: %w", fsError(err))
	}
	defer root.Close()
	// Refuse before writing anything.
	var total int64
	checked := map[string]bool{}
	for _, f := range files {
		total += f.Size
		if err := noLinkOnTheWay(root, dir, path.Dir(f.Path), checked); err != nil {
			return 0, err
		}
		fi, err := root.Lstat(f.Path)
		switch {
		case err == nil && fi.IsDir():
			return 0, opm.Errorf(opm.ErrExists, "%s: a directory is in the way of file %q (remove it, or pull into another directory)", dir, f.Path)
		case err == nil && !force:
			return 0, opm.Errorf(opm.ErrExists, "%s: %q exists; use --force to overwrite", dir, f.Path)
		case err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotDir(err):
			return 0, fmt.Errorf("%s: %q: %w", dir, f.Path, fsError(err))
		}
	}
	if progress != nil {
		progress.Start(len(files), total)
		defer progress.Done()
	}
	// Files are written in parallel: with a bucket, each may first be
	// fetched, and one at a time the round trips add up.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * runtime.GOMAXPROCS(0))
	// The bar moves as bytes are downloaded, or, for a blob that is local,
	// as they are written out (pullFile).
	counting := WithProgress(gctx, progress)
	for _, f := range files {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			if err := r.pullFile(counting, root, f); err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return total, setDirTimes(root, files)
}

// noLinkOnTheWay refuses a directory of dir on the way to a file (p, below
// the root) that is a symbolic link: a pull never writes through a link,
// not even one that stays inside dir (a checkout's hooks -> .git/hooks).
// checked remembers the directories seen to be none. It walks down from the
// root one name at a time, each looked at in the directory above it (a
// lookup of each whole path would cost the square of p's depth).
func noLinkOnTheWay(root *os.Root, dir, p string, checked map[string]bool) error {
	if p == "." || p == "/" || checked[p] {
		return nil
	}
	parts := strings.Split(p, "/")
	cur := root
	defer func() {
		if cur != root {
			cur.Close()
		}
	}()
	for i, name := range parts {
		d := strings.Join(parts[:i+1], "/")
		if !checked[d] {
			fi, err := cur.Lstat(name)
			switch {
			case err == nil && fi.Mode()&fs.ModeSymlink != 0:
				return opm.Errorf(opm.ErrExists, "%s: %q is a symbolic link; a pull never writes through one (remove it, or pull into another directory)", dir, d)
			case err == nil && !fi.IsDir():
				return opm.Errorf(opm.ErrExists, "%s: a file is in the way of the directory %q (remove it, or pull into another directory)", dir, d)
			case errors.Is(err, fs.ErrNotExist):
				for j := i; j < len(parts); j++ { // nothing below it is there either
					checked[strings.Join(parts[:j+1], "/")] = true
				}
				return nil
			case err != nil:
				return fmt.Errorf("%s: %q: %w", dir, d, fsError(err))
			}
			checked[d] = true
		}
		if i == len(parts)-1 {
			return nil
		}
		next, err := cur.OpenRoot(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // found absent before (checked): nothing below it is there
		}
		if err != nil {
			return fmt.Errorf("%s: %q: %w", dir, d, fsError(err))
		}
		if cur != root {
			cur.Close()
		}
		cur = next
	}
	return nil
}

// setDirTimes gives the package's directories, and dir itself, the newest
// time of what is below them, as the mount shows them (so that rsync -a
// and make see the same tree); nothing when the package records no times.
func setDirTimes(root *os.Root, files []opm.File) error {
	newest := map[string]time.Time{}
	for _, f := range files {
		if f.ModTime.IsZero() {
			continue
		}
		for d := path.Dir(f.Path); ; d = path.Dir(d) {
			if f.ModTime.After(newest[d]) {
				newest[d] = f.ModTime
			}
			if d == "." {
				break
			}
		}
	}
	for d, t := range newest {
		if err := root.Chtimes(d, t, t); err != nil {
			return fsError(err)
		}
	}
	return nil
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

func (r *Registry) pullFile(ctx context.Context, root *os.Root, f opm.File) error {
	if d := path.Dir(f.Path); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fsError(err)
		}
	}
	tmp := path.Join(path.Dir(f.Path), ".opm-pull-"+randomSuffix())
	if f.Symlink != "" {
		if err := root.Symlink(f.Symlink, tmp); err != nil {
			return fsError(err)
		}
		if !f.ModTime.IsZero() {
			// The link's own time (os.Root has no Lchtimes): its directory
			// was made by this pull, and is no link (noLinkOnTheWay).
			ts := []unix.Timespec{unix.NsecToTimespec(f.ModTime.UnixNano()), unix.NsecToTimespec(f.ModTime.UnixNano())}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root.Name(), filepath.FromSlash(tmp)), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				root.Remove(tmp)
				return fsError(err)
			}
		}
		return r.rename(root, tmp, f.Path)
	}
	// Progress (cas.WithProgress) counts a download, else the write out.
	writeCtx := ctx
	if !r.HasLocal(f.Digest) {
		writeCtx = cas.WithProgress(ctx, func(int64) {})
	}
	blob, err := r.openStored(ctx, &f)
	if err != nil {
		return err
	}
	defer blob.Close()
	out, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) // read back to verify
	if err != nil {
		return fsError(err)
	}
	err = blob.CopyTo(writeCtx, out)
	if err == nil {
		err = checkSize(out, f)
	}
	if err == nil {
		err = out.Chmod(f.Mode)
	}
	if err == nil && !f.ModTime.IsZero() {
		err = out.Close() // its time is set once nothing more is written
		out = nil
		if err == nil {
			err = root.Chtimes(tmp, f.ModTime, f.ModTime)
		}
	}
	if out != nil {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		root.Remove(tmp)
		return err
	}
	return r.rename(root, tmp, f.Path)
}

// checkSize refuses a blob that is not the size its descriptor says (the
// digest matched: the manifest lies).
func checkSize(out *os.File, f opm.File) error {
	fi, err := out.Stat()
	if err == nil && fi.Size() != f.Size {
		err = opm.Errorf(opm.ErrIntegrity, "blob %s is %d bytes but the manifest says %d", f.Digest, fi.Size(), f.Size)
	}
	return err
}

func (r *Registry) rename(root *os.Root, tmp, final string) error {
	if err := root.Rename(tmp, final); err != nil {
		root.Remove(tmp)
		return fsError(err)
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
