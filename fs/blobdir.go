package opmfs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/openpm/opm"
)

// blobsDirName is .opm/blobs: every blob of the registry by digest, at
// sha256/<first two hex digits>/<hex> (the layout of the local store's blob
// files), read-only and lookup-only. It is the overlay's last data layer
// (overlay.go): a blob that is not local is fetched when it is first
// opened, as any file of the mount.
const blobsDirName = "blobs"

// blobsDir is .opm/blobs (depth 0), its sha256 (1) and a fan-out directory
// of it (2, fan the two hex digits).
type blobsDir struct {
	lookupOnly
	depth int
	fan   string
}

var _ = (gofs.NodeLookuper)((*blobsDir)(nil))

func (d *blobsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	// A blob may reach the bucket any time: no negative entries.
	out.SetEntryTimeout(mutableTimeout)
	switch d.depth {
	case 0, 1:
		if d.depth == 0 && name != "sha256" || d.depth == 1 && !isHex(name, 2) {
			return nil, syscall.ENOENT
		}
		dirAttr(&out.Attr, d.fs.started)
		out.SetEntryTimeout(immutableTimeout)
		out.SetAttrTimeout(immutableTimeout)
		child := &blobsDir{lookupOnly: lookupOnly{fs: d.fs}, depth: d.depth + 1, fan: name}
		return d.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("blobs", d.fan, name)}), 0
	}
	dg, err := opm.ParseDigest("sha256:" + name)
	if err != nil || name[:2] != d.fan {
		return nil, syscall.ENOENT
	}
	facts, ok := d.fs.ovl.blobFacts(dg)
	if !ok {
		if facts.size, err = d.fs.reg.StatBlob(ctx, dg); err != nil {
			return nil, d.fs.fail("stat blob", err)
		}
	}
	f := &pkgFile{p: d.fs.blobs, f: &opm.File{Path: "sha256/" + d.fan + "/" + name,
		Mode: 0o444, Size: facts.size, Digest: dg, Chunks: facts.chunks}, seen: facts.file}
	f.attr(&out.Attr)
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	return d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino("blob", name)}), 0
}

// isHex reports whether s is n lower-case hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
