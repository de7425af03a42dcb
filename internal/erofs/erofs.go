// Package erofs writes EROFS images (Linux's read-only filesystem,
// fs/erofs/erofs_fs.h) of metadata-only trees: directories, symbolic links,
// and regular files that have a size, a mode, a time and extended
// attributes but no data — every file is one hole. That is what an
// overlayfs metacopy layer needs (the composefs design), and an image of it
// is read faster than the same tree as files in a directory, and is much
// smaller.
//
// The image is uncompressed, in 4 KiB blocks: block 0 holds the superblock,
// then come the inodes (64-byte extended ones, each with its inline
// extended attributes and, for a regular file, one null chunk per 8 TiB),
// then directory and symbolic link data. Nothing is shared between files.
package erofs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	blockBits = 12
	blockSize = 1 << blockBits

	superOffset = 1024
	superMagic  = 0xE0F5E1E2

	incompatChunkedFile = 0x4

	layoutExtended = 1 // i_format bit 0
	dataFlatPlain  = 0 // i_format bits 1-3
	dataChunkBased = 4

	// chunkFormatBits makes a chunk blockSize<<31 bytes (8 TiB), so a file
	// is one null entry of the block map.
	chunkFormatBits = 31
	nullAddr        = math.MaxUint32

	inodeSize = 64
	slotSize  = 32 // nids count 32-byte slots

	ftRegular = 1
	ftDir     = 2
	ftSymlink = 7

	xattrIndexUser    = 1
	xattrIndexTrusted = 4
)

// Xattr is an extended attribute: a "user." or "trusted." name, and its
// value.
type Xattr struct {
	Name  string
	Value []byte
}

// Image is a tree being built; its root directory exists from the start.
type Image struct {
	root *node
	all  []*node
}

type node struct {
	mode     uint32 // S_IF* | permission bits
	size     int64  // of a regular file
	mtime    time.Time
	target   string // of a symbolic link
	xattrs   []byte // the encoded inline entries
	children map[string]*node
	parent   *node

	nid     uint64
	ino     uint32
	data    []byte // directory entries or link target, in blocks
	dataBlk uint32
}

// New starts an image whose root directory has mode perm and time mtime.
func New(perm uint32, mtime time.Time) *Image {
	root := &node{mode: syscall.S_IFDIR | perm&0o7777, mtime: mtime, children: map[string]*node{}}
	root.parent = root
	return &Image{root: root, all: []*node{root}}
}

// Dir adds directory p (slash-separated, relative; its parent must exist).
func (im *Image) Dir(p string, perm uint32, mtime time.Time) error {
	return im.add(p, &node{mode: syscall.S_IFDIR | perm&0o7777, mtime: mtime, children: map[string]*node{}})
}

// File adds regular file p: size bytes of hole, with xattrs.
func (im *Image) File(p string, perm uint32, size int64, mtime time.Time, xattrs ...Xattr) error {
	if size < 0 {
		return fmt.Errorf("erofs: %s: negative size", p)
	}
	enc, err := encodeXattrs(xattrs)
	if err != nil {
		return fmt.Errorf("erofs: %s: %w", p, err)
	}
	return im.add(p, &node{mode: syscall.S_IFREG | perm&0o7777, size: size, mtime: mtime, xattrs: enc})
}

// Symlink adds symbolic link p to target, kept verbatim.
func (im *Image) Symlink(p, target string, mtime time.Time) error {
	if target == "" || len(target) > blockSize || strings.ContainsRune(target, 0) {
		return fmt.Errorf("erofs: %s: link target of %d bytes", p, len(target))
	}
	return im.add(p, &node{mode: syscall.S_IFLNK | 0o777, target: target, mtime: mtime})
}

func (im *Image) add(p string, n *node) error {
	dir, name := path.Split(p)
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsRune(name, 0) || path.Clean(p) != p {
		return fmt.Errorf("erofs: bad name %q", p)
	}
	parent := im.root
	if dir != "" {
		parent = im.lookup(strings.TrimSuffix(dir, "/"))
		if parent == nil || parent.children == nil {
			return fmt.Errorf("erofs: %s: no parent directory", p)
		}
	}
	if _, ok := parent.children[name]; ok {
		return fmt.Errorf("erofs: %s: added twice", p)
	}
	n.parent = parent
	parent.children[name] = n
	im.all = append(im.all, n)
	return nil
}

func (im *Image) lookup(p string) *node {
	n := im.root
	for _, name := range strings.Split(p, "/") {
		if n = n.children[name]; n == nil {
			return nil
		}
	}
	return n
}

// encodeXattrs is the inline xattr body: its 12-byte header, then each
// entry (name index, name suffix, value) padded to 4 bytes.
func encodeXattrs(xs []Xattr) ([]byte, error) {
	if len(xs) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.Write(make([]byte, 12)) // no name filter, no shared xattrs
	for _, x := range xs {
		var index byte
		var suffix string
		switch {
		case strings.HasPrefix(x.Name, "trusted."):
			index, suffix = xattrIndexTrusted, strings.TrimPrefix(x.Name, "trusted.")
		case strings.HasPrefix(x.Name, "user."):
			index, suffix = xattrIndexUser, strings.TrimPrefix(x.Name, "user.")
		default:
			return nil, fmt.Errorf("xattr %q: only user. and trusted. names", x.Name)
		}
		if suffix == "" || len(suffix) > 255 || len(x.Value) > 0xffff {
			return nil, fmt.Errorf("xattr %q: bad name or value size", x.Name)
		}
		b.Write([]byte{byte(len(suffix)), index})
		b.Write(binary.LittleEndian.AppendUint16(nil, uint16(len(x.Value))))
		b.WriteString(suffix)
		b.Write(x.Value)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	return b.Bytes(), nil
}

// chunks is the number of block map entries of a regular file.
func (n *node) chunks() int64 {
	const chunk = int64(blockSize) << chunkFormatBits
	return (n.size + chunk - 1) / chunk
}

// slotBytes is the inode's size in the metadata area, a multiple of 32.
func (n *node) slotBytes() int64 {
	s := int64(inodeSize + len(n.xattrs))
	if n.mode&syscall.S_IFMT == syscall.S_IFREG {
		s += 4 * n.chunks()
	}
	return (s + slotSize - 1) / slotSize * slotSize
}

type dirent struct {
	name string
	n    *node
}

// entries is directory n's listing with "." and "..", sorted by bytes as
// the kernel's binary search expects.
func (n *node) entries() []dirent {
	es := []dirent{{".", n}, {"..", n.parent}}
	for name, c := range n.children {
		es = append(es, dirent{name, c})
	}
	slices.SortFunc(es, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	return es
}

func fileType(mode uint32) byte {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return ftDir
	case syscall.S_IFLNK:
		return ftSymlink
	}
	return ftRegular
}

// dirData packs a listing into blocks: in each, the 12-byte entries, then
// their names, unterminated (the next entry's name offset, or the block's
// end, bounds each).
func dirData(es []dirent) []byte {
	var out []byte
	for len(es) > 0 {
		k, used := 0, 0
		for k < len(es) && used+12+len(es[k].name) <= blockSize {
			used += 12 + len(es[k].name)
			k++
		}
		blk := make([]byte, 0, blockSize)
		nameOff := 12 * k
		for _, e := range es[:k] {
			blk = binary.LittleEndian.AppendUint64(blk, e.n.nid)
			blk = binary.LittleEndian.AppendUint16(blk, uint16(nameOff))
			blk = append(blk, fileType(e.n.mode), 0)
			nameOff += len(e.name)
		}
		for _, e := range es[:k] {
			blk = append(blk, e.name...)
		}
		es = es[k:]
		if len(es) > 0 {
			blk = blk[:blockSize] // zero to the block's end
		}
		out = append(out, blk...)
	}
	return out
}

// WriteTo writes the image.
func (im *Image) WriteTo(w io.Writer) (int64, error) {
	meta, err := im.placeInodes()
	if err != nil {
		return 0, err
	}
	blocks, err := im.placeData(metaBlk + (meta+blockSize-1)/blockSize)
	if err != nil {
		return 0, err
	}

	// Written in order — superblock, inodes, data — through one buffer.
	out := &sink{w: bufio.NewWriterSize(w, 1<<20)}
	out.padTo(superOffset)
	out.write(im.superblock(blocks))
	in := make([]byte, blockSize)
	for _, n := range im.all {
		out.padTo(metaBlk*blockSize + int64(n.nid)*slotSize)
		out.write(n.inode(in))
	}
	for _, n := range im.all {
		if n.data != nil {
			out.padTo(int64(n.dataBlk) * blockSize)
			out.write(n.data)
		}
	}
	out.padTo(int64(blocks) * blockSize)
	if out.err == nil {
		out.err = out.w.Flush()
	}
	return out.n, out.err
}

// metaBlk is the block where the inodes begin, after the superblock's.
const metaBlk = 1

// placeInodes gives every inode its nid and number, and returns the bytes
// of the inode area.
func (im *Image) placeInodes() (int64, error) {
	if len(im.all) >= math.MaxUint32 {
		return 0, errors.New("erofs: too many inodes")
	}
	// Inodes, the root first (at nid 0: the superblock keeps 16 bits of
	// it), each within a block.
	var meta int64
	for i, n := range im.all {
		s := n.slotBytes()
		if s > blockSize {
			return 0, errors.New("erofs: an inode with its xattrs exceeds a block")
		}
		if meta/blockSize != (meta+s-1)/blockSize {
			meta = (meta + blockSize - 1) / blockSize * blockSize
		}
		n.nid, n.ino = uint64(meta/slotSize), uint32(i+1)
		meta += s
	}
	return meta, nil
}

// placeData encodes every directory's and symbolic link's data and gives
// it blocks from block first on; it returns the image's size in blocks.
func (im *Image) placeData(first int64) (uint32, error) {
	blocks := first
	if blocks > math.MaxUint32 {
		return 0, errors.New("erofs: image too large")
	}
	for _, n := range im.all {
		switch n.mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			n.data = dirData(n.entries())
		case syscall.S_IFLNK:
			n.data = []byte(n.target)
		default:
			continue
		}
		n.dataBlk = uint32(blocks)
		blocks += (int64(len(n.data)) + blockSize - 1) / blockSize
		if blocks > math.MaxUint32 {
			return 0, errors.New("erofs: image too large")
		}
	}
	return uint32(blocks), nil
}

// superblock is the image's 128-byte superblock, for an image of blocks
// blocks whose inodes are placed.
func (im *Image) superblock(blocks uint32) []byte {
	le := binary.LittleEndian
	sb := make([]byte, 128)
	le.PutUint32(sb[0:], superMagic)
	sb[12] = blockBits
	le.PutUint16(sb[14:], uint16(im.root.nid))
	le.PutUint64(sb[16:], uint64(len(im.all)))
	le.PutUint32(sb[36:], blocks)  // blocks
	le.PutUint32(sb[40:], metaBlk) // meta_blkaddr
	le.PutUint32(sb[80:], incompatChunkedFile)
	return sb
}

// inode encodes n's extended inode, its inline xattrs and, for a file with
// data, its null block map into buf (a block), and returns the slot's bytes.
func (n *node) inode(buf []byte) []byte {
	le := binary.LittleEndian
	in := buf[:n.slotBytes()]
	clear(in)
	layout, size := dataFlatPlain, uint64(len(n.data))
	if n.mode&syscall.S_IFMT == syscall.S_IFREG {
		size = uint64(n.size)
		if n.size > 0 {
			layout = dataChunkBased
		}
	}
	le.PutUint16(in[0:], uint16(layoutExtended|layout<<1))
	if len(n.xattrs) > 0 {
		le.PutUint16(in[2:], uint16(1+(len(n.xattrs)-12)/4))
	}
	le.PutUint16(in[4:], uint16(n.mode))
	le.PutUint64(in[8:], size)
	switch {
	case layout == dataChunkBased:
		le.PutUint16(in[16:], chunkFormatBits)
	case n.data != nil:
		le.PutUint32(in[16:], n.dataBlk)
	}
	le.PutUint32(in[20:], n.ino)
	mt := n.mtime
	if mt.Before(time.Unix(0, 0)) {
		mt = time.Unix(0, 0)
	}
	le.PutUint64(in[32:], uint64(mt.Unix()))
	le.PutUint32(in[40:], uint32(mt.Nanosecond()))
	le.PutUint32(in[44:], n.nlink())
	copy(in[inodeSize:], n.xattrs)
	if layout == dataChunkBased {
		m := in[inodeSize+len(n.xattrs):]
		for i := range n.chunks() {
			le.PutUint32(m[4*i:], nullAddr)
		}
	}
	return in
}

// nlink is n's link count: 1 for a file or link; for a directory 2 and
// one per subdirectory.
func (n *node) nlink() uint32 {
	if n.children == nil {
		return 1
	}
	nlink := uint32(2)
	for _, c := range n.children {
		if c.children != nil {
			nlink++
		}
	}
	return nlink
}

// sink writes in order, remembering how much and the first error.
type sink struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (s *sink) write(b []byte) {
	if s.err == nil {
		var k int
		k, s.err = s.w.Write(b)
		s.n += int64(k)
	}
}

// padTo writes zeros up to offset off.
func (s *sink) padTo(off int64) {
	var zeros [blockSize]byte
	for s.err == nil && s.n < off {
		s.write(zeros[:min(off-s.n, blockSize)])
	}
}

// Mount mounts the image file at image read-only, detached (fsmount(2)):
// it returns the mount's descriptor, through which "/proc/self/fd/N" names
// its root. The mount lives while the descriptor or a mount made over it
// (an overlay with it as a layer) does. The kernel must read EROFS from a
// file (Linux ≥ 6.12, CONFIG_EROFS_FS_BACKED_BY_FILE).
func Mount(image string) (int, error) {
	fd, err := unix.Fsopen("erofs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("no erofs: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetString(fd, "source", image); err != nil {
		return -1, fmt.Errorf("erofs source %s: %w", image, err)
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return -1, fmt.Errorf("erofs %s: %w", image, err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("fsmount erofs %s: %w", image, err)
	}
	return mfd, nil
}
