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
	s := &scanner{o: o, claimed: map[string]string{}, inodes: map[[2]uint64]int{}}
	for _, p := range paths {
		if err := s.input(p); err != nil {
			return nil, 0, err
		}
	}
	if len(s.out) == 0 {
		return nil, s.skipped, opm.Errorf(opm.ErrInvalid, "%v: no files to push (empty directories and .git are not kept)", paths)
	}
	return s.out, s.skipped, nil
}

// scanner is the state of one scan.
type scanner struct {
	o       scanOptions
	out     []source
	skipped int
	claimed map[string]string // package path -> the input that claims it
	inodes  map[[2]uint64]int // (device, inode) -> index in out, of files with links
}

// input adds one command-line path: a file under its base name, a
// directory's tree relative to it.
func (s *scanner) input(p string) error {
	fi, err := s.stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if opm.IsDotGit(filepath.Base(p)) {
			s.skipped++
			return nil
		}
		return s.add(path.Clean(filepath.Base(p)), p, fi)
	}
	return s.walk(p, "", map[[2]uint64]bool{dirKey(fi): true})
}

// stat is what a name is: the link itself, or with Dereference what it
// points at.
func (s *scanner) stat(p string) (fs.FileInfo, error) {
	fi, err := os.Lstat(p)
	if err == nil && s.o.Dereference && fi.Mode()&fs.ModeSymlink != 0 {
		if fi, err = os.Stat(p); err != nil {
			return nil, fsError(fmt.Errorf("%s: a link that leads nowhere, with --dereference: %w", p, err))
		}
	}
	return fi, fsError(err)
}

// walk adds the tree below dir (its package path rel); seen holds the
// directories on the way down, against a cycle of links.
func (s *scanner) walk(dir, rel string, seen map[[2]uint64]bool) error {
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
			s.skipped += n
			continue
		}
		fi, err := s.stat(full)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			err = s.add(pkgPath, full, fi)
		} else {
			err = s.descend(full, pkgPath, fi, seen)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// descend walks the directory full (its package path pkgPath) unless it is
// one of seen, the directories above it.
func (s *scanner) descend(full, pkgPath string, fi fs.FileInfo, seen map[[2]uint64]bool) error {
	key := dirKey(fi)
	if seen[key] {
		return opm.Errorf(opm.ErrInvalid, "%s: a link leads back to a directory above it (a cycle, with --dereference)", full)
	}
	seen[key] = true
	err := s.walk(full, pkgPath, seen)
	delete(seen, key)
	return err
}

// add records the file or symlink full (described by fi) as the package
// path pkgPath, refusing a path already claimed, an invalid one and a
// special file.
func (s *scanner) add(pkgPath, full string, fi fs.FileInfo) error {
	if other, ok := s.claimed[pkgPath]; ok {
		return opm.Errorf(opm.ErrInvalid, "%s and %s both claim the package path %q", other, full, pkgPath)
	}
	s.claimed[pkgPath] = full
	if err := opm.ValidatePath(pkgPath); err != nil {
		return fmt.Errorf("%s: %w", full, err)
	}
	f := opm.File{Path: pkgPath, Mode: fi.Mode().Perm(), ModTime: fi.ModTime()}
	if !s.o.Clamp.IsZero() && f.ModTime.After(s.o.Clamp) {
		f.ModTime = s.o.Clamp
	}
	src := source{file: f, same: -1}
	var err error
	switch {
	case fi.Mode().IsRegular():
		err = s.fillRegular(&src, full, fi)
	case fi.Mode()&fs.ModeSymlink != 0:
		err = fillSymlink(&src, pkgPath, full)
	default:
		err = opm.Errorf(opm.ErrInvalid, "%s is a %s; only regular files, directories and symlinks can be pushed", full, kind(fi.Mode()))
	}
	if err != nil {
		return err
	}
	s.out = append(s.out, src)
	return nil
}

// fillRegular fills in src for the readable regular file full, noting which
// earlier source it is a hard link of, if any.
func (s *scanner) fillRegular(src *source, full string, fi fs.FileInfo) error {
	if err := unix.Access(full, unix.R_OK); err != nil {
		return fsError(&fs.PathError{Op: "open", Path: full, Err: err})
	}
	src.file.Size, src.from = fi.Size(), full
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if i, seen := s.inodes[key]; seen {
			src.same = i
		} else {
			s.inodes[key] = len(s.out)
		}
	}
	return nil
}

// fillSymlink fills in src for the link full, kept verbatim, refusing a target
// that is not valid at pkgPath.
func fillSymlink(src *source, pkgPath, full string) error {
	target, err := os.Readlink(full)
	if err != nil {
		return fsError(err)
	}
	if err := opm.ValidateSymlink(pkgPath, target); err != nil {
		return fmt.Errorf("%s: %w", full, err)
	}
	src.file.Symlink, src.file.Digest, src.file.Mode = target, opm.EmptyFileDigest, 0o777
	return nil
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
