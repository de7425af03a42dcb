package registry

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openpm/opm"
)

// source is one file of a package-to-be and where its bytes come from.
type source struct {
	file opm.File
	from string // the file on disk; "" for a symlink
	// same is the index of an earlier source that is the same file (a
	// hard link): its bytes are read once. -1 when none.
	same int
}

// scanOptions are the choices of scan.
type scanOptions struct {
	// Dereference follows symbolic links: a link to a file is that file,
	// a link to a directory its tree. Otherwise links are kept verbatim.
	Dereference bool
	// Clamp, when not zero, is the latest modification time recorded:
	// later ones become it (as tar --mtime with --clamp-mtime, or
	// $SOURCE_DATE_EPOCH for reproducible builds).
	Clamp time.Time
}

// scan turns command-line paths into package files. A directory
// contributes the files beneath it with paths relative to it; a file (or
// symlink) contributes itself under its base name. Each file's mode and
// modification time are recorded; links are kept verbatim (absolute and
// dangling ones too) unless Dereference. Special files, unreadable files
// and two inputs claiming one path are refused here, before anything is
// written.
//
// git's own directories (.git, as opm.IsDotGit sees it) are left out: a
// package never carries one, and pull never writes one. skipped counts the
// files left out so.
func scan(paths []string, o scanOptions) (out []source, skipped int, err error) {
	claimed := map[string]string{}
	inodes := map[[2]uint64]int{} // (device, inode) -> index in out, of files with links
	add := func(pkgPath, full string, fi fs.FileInfo) error {
		if other, ok := claimed[pkgPath]; ok {
			return opm.Errorf(opm.ErrInvalid, "%s and %s both claim the package path %q", other, full, pkgPath)
		}
		claimed[pkgPath] = full
		if err := opm.ValidatePath(pkgPath); err != nil {
			return fmt.Errorf("%s: %w", full, err)
		}
		f := opm.File{Path: pkgPath, Mode: fi.Mode().Perm(), ModTime: fi.ModTime()}
		if !o.Clamp.IsZero() && f.ModTime.After(o.Clamp) {
			f.ModTime = o.Clamp
		}
		src := source{file: f, same: -1}
		switch {
		case fi.Mode().IsRegular():
			if err := unix.Access(full, unix.R_OK); err != nil {
				return fsError(&fs.PathError{Op: "open", Path: full, Err: err})
			}
			src.file.Size, src.from = fi.Size(), full
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				key := [2]uint64{uint64(st.Dev), st.Ino}
				if i, seen := inodes[key]; seen {
					src.same = i
				} else {
					inodes[key] = len(out)
				}
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return fsError(err)
			}
			if err := opm.ValidateSymlink(pkgPath, target); err != nil {
				return fmt.Errorf("%s: %w", full, err)
			}
			src.file.Symlink, src.file.Digest, src.file.Mode = target, opm.EmptyFileDigest, 0o777
		default:
			return opm.Errorf(opm.ErrInvalid, "%s is a %s; only regular files, directories and symlinks can be pushed", full, kind(fi.Mode()))
		}
		out = append(out, src)
		return nil
	}
	// stat is what a name is: the link itself, or with Dereference what it
	// points at.
	stat := func(p string) (fs.FileInfo, error) {
		fi, err := os.Lstat(p)
		if err == nil && o.Dereference && fi.Mode()&fs.ModeSymlink != 0 {
			if fi, err = os.Stat(p); err != nil {
				return nil, fsError(fmt.Errorf("%s: a link that leads nowhere, with --dereference: %w", p, err))
			}
		}
		return fi, fsError(err)
	}
	// walk adds the tree below dir (its package path rel); seen holds the
	// directories on the way down, against a cycle of links.
	var walk func(dir, rel string, seen map[[2]uint64]bool) error
	walk = func(dir, rel string, seen map[[2]uint64]bool) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fsError(err)
		}
		for _, e := range entries {
			full, pkgPath := filepath.Join(dir, e.Name()), path.Join(rel, e.Name())
			if opm.IsDotGit(e.Name()) {
				n, err := countFiles(full)
				if err != nil {
					return err
				}
				skipped += n
				continue
			}
			fi, err := stat(full)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				if err := add(pkgPath, full, fi); err != nil {
					return err
				}
				continue
			}
			key := dirKey(fi)
			if seen[key] {
				return opm.Errorf(opm.ErrInvalid, "%s: a link leads back to a directory above it (a cycle, with --dereference)", full)
			}
			seen[key] = true
			err = walk(full, pkgPath, seen)
			delete(seen, key)
			if err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range paths {
		fi, err := stat(p)
		if err != nil {
			return nil, 0, err
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
		if err := walk(p, "", map[[2]uint64]bool{dirKey(fi): true}); err != nil {
			return nil, 0, err
		}
	}
	if len(out) == 0 {
		return nil, skipped, opm.Errorf(opm.ErrInvalid, "%v: no files to push (empty directories and .git are not kept)", paths)
	}
	return out, skipped, nil
}

// dirKey identifies a directory by device and inode.
func dirKey(fi fs.FileInfo) [2]uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return [2]uint64{uint64(st.Dev), st.Ino}
	}
	return [2]uint64{}
}

// countFiles counts the files at or below p, links not followed.
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
