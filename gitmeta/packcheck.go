package gitmeta

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/openpm/opm"
)

// MaxObjectSize is the largest git object a fetch takes: no file of the
// layout is larger (a manifest is at most opm.MaxManifestSize, and every
// read of a file refuses more), and no tree or commit of a registry comes
// near it. go-git inflates each object of a fetched pack whole in memory to
// index it, so an object of a gigabyte of zeros, a few megabytes on the
// wire, would take a gigabyte; checkPack refuses it from its header first.
const MaxObjectSize = opm.MaxManifestSize

// checkedPacks is go-git's storage of a repository whose fetched packs are
// checked (checkPack) before go-git indexes them: a pack is spooled to a
// temporary file in objects/pack (tmp_pack_*, which BeginFetch removes
// when an interrupted fetch leaves one), checked, and only then handed to
// go-git's own pack writer. A refused pack fails the fetch before go-git
// writes any ref.
type checkedPacks struct{ *filesystem.Storage }

func (s checkedPacks) PackfileWriter() (io.WriteCloser, error) {
	dir := filepath.Join(s.Filesystem().Root(), "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "tmp_pack_check_")
	if err != nil {
		return nil, err
	}
	return &packSpool{f: f, st: s.Storage}, nil
}

// packSpool is a fetched pack on its way to go-git's storage.
type packSpool struct {
	f  *os.File
	st *filesystem.Storage
	n  int64
}

func (p *packSpool) Write(b []byte) (int, error) {
	n, err := p.f.Write(b)
	p.n += int64(n)
	return n, err
}

func (p *packSpool) Close() (err error) {
	defer func() {
		p.f.Close()
		os.Remove(p.f.Name())
	}()
	if p.n == 0 {
		return nil // go-git says the pack is empty
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := checkPack(p.f); err != nil {
		return err
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	w, err := p.st.PackfileWriter()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, p.f); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// checkPack reads the pack r object by object and refuses one larger than
// MaxObjectSize, inflating none whole: the size of a whole object is in
// its header, and a delta's header has the size of its instructions, the
// first bytes of which say the size of the object they make. Each object
// is inflated as it streams, to nowhere, and never past the size its header
// declares.
func checkPack(r io.ReadSeeker) error {
	s := packfile.NewScanner(r)
	_, count, err := s.Header()
	if err != nil {
		return fmt.Errorf("fetched pack: %w", err)
	}
	for i := uint32(0); i < count; i++ {
		h, err := s.NextObjectHeader() // the previous object streams to nowhere
		if err != nil {
			return fmt.Errorf("fetched pack: object %d: %w", i, err)
		}
		size := h.Length
		if size <= MaxObjectSize && (h.Type == plumbing.OFSDeltaObject || h.Type == plumbing.REFDeltaObject) {
			var head deltaHead
			if _, _, err := s.NextObject(&head); err != nil {
				return fmt.Errorf("fetched pack: object %d: %w", i, err)
			}
			if size, err = head.target(); err != nil {
				return fmt.Errorf("fetched pack: object %d: %w", i, err)
			}
		}
		if size > MaxObjectSize {
			return opm.Errorf(opm.ErrInvalid, "fetched pack: object %d (%s at offset %d) is %d bytes, over the %d-byte limit of a metadata object", i, h.Type, h.Offset, size, MaxObjectSize)
		}
	}
	return nil
}

// deltaHead keeps the first bytes of a delta's instructions and drops the
// rest: they start with two sizes, the base's and the target's, each at
// most 10 bytes.
type deltaHead struct {
	b []byte
}

func (d *deltaHead) Write(p []byte) (int, error) {
	if n := 20 - len(d.b); n > 0 {
		d.b = append(d.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// target is the size of the object the delta makes.
func (d *deltaHead) target() (int64, error) {
	rest := d.b
	var size int64
	for range 2 {
		var ok bool
		if size, rest, ok = varint(rest); !ok {
			return 0, errors.New("a delta with no sizes")
		}
	}
	return size, nil
}

// varint decodes the size encoding of git's deltas: 7 bits a byte, least
// significant first, the high bit set on every byte but the last.
func varint(b []byte) (int64, []byte, bool) {
	var v int64
	for i, shift := 0, 0; i < len(b) && shift < 63; i, shift = i+1, shift+7 {
		v |= int64(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return v, b[i+1:], true
		}
	}
	return 0, nil, false
}
