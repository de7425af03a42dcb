// Package cas stores content-addressed blobs: a Local store on disk, a
// Bucket (the registry's copy: a file://, s3://, gs://, azblob:// or mem://
// gocloud.dev/blob URL), a Cache that serves a Bucket through a Local store, and a Badger
// Index of facts about the local files.
//
// Every blob is named by the sha256 digest of its bytes. Other algorithms are
// refused with opm.ErrInvalid. Bytes are verified before a blob becomes
// visible (Put, Ingest) and again while they are read from a store that cannot
// guarantee them (Open returns an opm.ErrIntegrity error instead of io.EOF).
//
// Layout of the local store, <home>/blobs (see OpenLocal):
//
//	<home>/blobs/
//	├── sha256/
//	│   ├── 00/
//	│   │   └── 00a1…<64 hex>     one whole file per blob, mode 0444,
//	│   │                         always exactly the bytes of its digest
//	│   ├── …
//	│   └── ff/
//	└── tmp/
//	    └── put-<random>          bytes being written and hashed; renamed
//	                              into sha256/ only once verified
//
// The index, <home>/index, is a Badger database (see OpenIndex). It is a cache
// of facts about the files above and can be rebuilt from them.
//
// Layout of a bucket (see OpenBucket):
//
//	<bucket>/
//	└── blobs/
//	    └── sha256/
//	        └── <64 hex>          the blob, written once (IfNotExist)
package cas

import (
	"context"
	"crypto/sha256"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

// Fetcher opens a blob for reading.
type Fetcher interface {
	// Open returns the blob's bytes. It fails with opm.ErrNotFound if the
	// blob is absent. A reader that cannot trust its source returns an
	// opm.ErrIntegrity error instead of io.EOF when the bytes are wrong.
	Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// RangeFetcher opens part of a blob.
type RangeFetcher interface {
	// OpenRange returns the length bytes of the blob that start at offset;
	// a negative length means to the end. A range that runs past the end is
	// cut at the end; one that starts past it fails with opm.ErrInvalid. It
	// fails with opm.ErrNotFound if the blob is absent.
	//
	// A part of a blob cannot be checked against the blob's digest, so a
	// store that cannot guarantee its bytes (a Bucket) returns them as they
	// are: the caller checks them (against a chunk list) or reads the whole
	// blob with Open. The whole blob asked for as a range (offset 0, length
	// negative) is verified as Open verifies it. A body shorter than the
	// range fails with io.ErrUnexpectedEOF, never a silent short read.
	OpenRange(ctx context.Context, d digest.Digest, offset, length int64) (io.ReadCloser, error)
}

// Stater reports the size of a blob.
type Stater interface {
	// Stat returns the blob's size, or opm.ErrNotFound.
	Stat(ctx context.Context, d digest.Digest) (size int64, err error)
}

// Pusher stores a blob.
type Pusher interface {
	// Put stores exactly size bytes read from r under d. The digest and size
	// are verified before the blob becomes visible; a mismatch fails with
	// opm.ErrIntegrity and stores nothing. If the blob is already present with
	// that size Put returns nil, possibly without reading r.
	Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) error
}

// Deleter removes a blob.
type Deleter interface {
	// Delete removes the blob, or fails with opm.ErrNotFound.
	Delete(ctx context.Context, d digest.Digest) error
}

// Store is the whole blob store role.
type Store interface {
	Fetcher
	RangeFetcher
	Stater
	Pusher
	Deleter
	io.Closer
}

// validate refuses anything but a well-formed sha256 digest.
func validate(d digest.Digest) error {
	if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
		return opm.Errorf(opm.ErrInvalid, "digest %q: want sha256:<64 lowercase hex>", string(d))
	}
	return nil
}

// validatePut checks the arguments common to every Put.
func validatePut(d digest.Digest, size int64) error {
	if err := validate(d); err != nil {
		return err
	}
	if size < 0 {
		return opm.Errorf(opm.ErrInvalid, "blob %s: negative size %d", d, size)
	}
	return nil
}

// validateRange checks the arguments common to every OpenRange.
func validateRange(d digest.Digest, offset int64) error {
	if err := validate(d); err != nil {
		return err
	}
	if offset < 0 {
		return opm.Errorf(opm.ErrInvalid, "blob %s: negative offset %d", d, offset)
	}
	return nil
}

// wholeRange reports whether a range is the whole blob, which is verified.
func wholeRange(offset, length int64) bool { return offset == 0 && length < 0 }

// rangeOf cuts a range at the end of a blob of size bytes: the length to
// read, or an opm.ErrInvalid error if offset is past the end.
func rangeOf(d digest.Digest, size, offset, length int64) (int64, error) {
	if offset > size {
		return 0, opm.Errorf(opm.ErrInvalid, "blob %s: offset %d is past its end (%d bytes)", d, offset, size)
	}
	if length < 0 || length > size-offset {
		length = size - offset
	}
	return length, nil
}

// exactReader returns io.ErrUnexpectedEOF instead of io.EOF when fewer than
// want bytes came, and never more than want.
type exactReader struct {
	rc   io.ReadCloser
	want int64
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.want <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.want {
		p = p[:r.want]
	}
	n, err := r.rc.Read(p)
	r.want -= int64(n)
	if err == io.EOF && r.want > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && r.want == 0 {
		err = io.EOF
	}
	return n, err
}

func (r *exactReader) Close() error { return r.rc.Close() }

// integrityError reports bytes that do not match what was asked for.
func integrityError(d digest.Digest, size int64, got digest.Digest, n int64) error {
	if size >= 0 && n != size {
		return opm.Errorf(opm.ErrIntegrity, "blob %s: got %d bytes, want %d", d, n, size)
	}
	return opm.Errorf(opm.ErrIntegrity, "blob %s: content hashes to %s", d, got)
}

// verifier hashes what it reads and replaces io.EOF with an opm.ErrIntegrity
// error when the bytes do not hash to d (or, when size is not negative, are
// not size bytes). onBad, if set, runs once on a mismatch; onGood once when
// the whole blob was read and matched.
type verifier struct {
	rc     io.ReadCloser
	d      digest.Digest
	size   int64
	h      hash.Hash
	n      int64
	err    error
	onBad  func()
	onGood func(n int64)
}

func newVerifier(rc io.ReadCloser, d digest.Digest) *verifier {
	return &verifier{rc: rc, d: d, size: -1, h: sha256.New()}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if got := digest.NewDigest(digest.SHA256, v.h); got != v.d || v.size >= 0 && v.n != v.size {
			err = integrityError(v.d, v.size, got, v.n)
			if v.onBad != nil {
				v.onBad()
			}
		} else if v.onGood != nil {
			v.onGood(v.n)
		}
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }
