package cas

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/internal/flock"
)

// State is what the index knows about a blob's local file.
type State uint8

const (
	// StatePresent: the file is in the local store.
	StatePresent State = 1
	// StateFetching: a download into the local store has started.
	StateFetching State = 2
)

// Entry is the index's record of one blob.
type Entry struct {
	Size       int64
	State      State
	LastAccess time.Time // last open, put or verification
	Verified   time.Time // last time its bytes were hashed and matched; zero if never
}

// Index is a Badger database, normally <home>/index, of facts about the
// blobs of a Local store. The files are the truth: the index is a cache that
// Rebuild recreates from them. One process at a time may open it.
type Index struct {
	mu sync.Mutex // serializes read-modify-write updates
	db *badger.DB
}

// OpenIndex opens (creating if needed) the index in dir. If another process
// holds it, OpenIndex retries with backoff until wait has passed, then fails
// with opm.ErrLocked; it gives up at once when ctx ends.
func OpenIndex(ctx context.Context, dir string, wait time.Duration) (*Index, error) {
	// Opened by short-lived CLI processes: small tables, no caches, no
	// compression, values inline in the LSM tree.
	opts := badger.DefaultOptions(dir).
		WithLogger(slogLogger{}).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		WithValueThreshold(1 << 10).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithCompression(options.None).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithDetectConflicts(false)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	deadline := time.Now().Add(wait)
	backoff := 10 * time.Millisecond
	for {
		db, err := badger.Open(opts)
		if err == nil {
			return &Index{db: db}, nil
		}
		// Held by another process: wait. The holder may have let go
		// between the failed open and the probe, so Badger's own words
		// for a held lock count too.
		if !locked(dir) && !strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open index %s: %w", dir, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, opm.Errorf(opm.ErrLocked, "index %s: waited %s", dir, wait)
		}
		t := time.NewTimer(min(backoff, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// locked reports whether another holder has Badger's lock on dir. Badger
// flocks the directory and reports a held lock only as text, so the lock is
// probed the same way.
func locked(dir string) bool { return flock.Held(dir, flock.Exclusive) }

// Close closes the database.
func (x *Index) Close() error {
	if err := x.db.Close(); err != nil {
		return fmt.Errorf("close index: %w", err)
	}
	return nil
}

// Get returns the entry of d, or opm.ErrNotFound.
func (x *Index) Get(d digest.Digest) (Entry, error) {
	var e Entry
	err := x.db.View(func(txn *badger.Txn) error {
		var found bool
		var err error
		e, found, err = get(txn, d)
		if err == nil && !found {
			err = opm.Errorf(opm.ErrNotFound, "blob %s is not in the index", d)
		}
		return err
	})
	return e, err
}

// Record notes that d is present with size bytes that were just verified.
func (x *Index) Record(d digest.Digest, size int64) error {
	now := time.Now()
	return x.update(d, func(e *Entry, _ bool) error {
		e.Size, e.State, e.LastAccess, e.Verified = size, StatePresent, now, now
		return nil
	})
}

// Add notes that d is present with size bytes, accessed now, without
// claiming its bytes were verified. The verification time is kept.
func (x *Index) Add(d digest.Digest, size int64) error {
	now := time.Now()
	return x.update(d, func(e *Entry, _ bool) error {
		e.Size, e.State, e.LastAccess = size, StatePresent, now
		return nil
	})
}

// TouchAt sets the last access time of the entries of ds that exist to t,
// in one transaction; digests without an entry are skipped. Unlike Touch
// (one entry, now, which must exist) it takes the time: a command that read
// many blobs touches them all at once with the time it read them, and tests
// arrange access times with it.
func (x *Index) TouchAt(ds []digest.Digest, t time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.db.Update(func(txn *badger.Txn) error {
		for _, d := range ds {
			e, found, err := get(txn, d)
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			e.LastAccess = t
			if err := txn.Set(key(d), e.encode()); err != nil {
				return fmt.Errorf("index entry %s: %w", d, err)
			}
		}
		return nil
	})
}

// Each calls fn for every entry of the index, in digest order, from one
// consistent view of the database. fn must not update the index.
func (x *Index) Each(fn func(d digest.Digest, e Entry) error) error {
	return x.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			d := digest.Digest(item.Key()[len(keyPrefix):])
			var e Entry
			err := item.Value(func(v []byte) error {
				var err error
				e, err = decode(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("index entry %s: %w", d, err)
			}
			if err := fn(d, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// MarkFetching notes that a download of d has started.
func (x *Index) MarkFetching(d digest.Digest) error {
	return x.update(d, func(e *Entry, _ bool) error {
		e.State = StateFetching
		return nil
	})
}

// Touch sets the last access time of d to now, or fails with
// opm.ErrNotFound (TouchAt sets a given time for many).
func (x *Index) Touch(d digest.Digest) error {
	now := time.Now()
	return x.update(d, func(e *Entry, found bool) error {
		if !found {
			return opm.Errorf(opm.ErrNotFound, "blob %s is not in the index", d)
		}
		e.LastAccess = now
		return nil
	})
}

// Delete removes the entry of d; a missing entry is not an error.
func (x *Index) Delete(d digest.Digest) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.db.Update(func(txn *badger.Txn) error { return txn.Delete(key(d)) }); err != nil {
		return fmt.Errorf("index entry %s: %w", d, err)
	}
	return nil
}

// Rebuild makes the index agree with the files of l: entries of missing
// files are removed, files without an entry get one (never verified), and
// sizes are taken from the files. Access and verification times of the
// files that remain are kept.
func (x *Index) Rebuild(l *Local) error {
	files := make(map[digest.Digest]int64)
	if err := l.Walk(func(d digest.Digest, size int64) error {
		files[d] = size
		return nil
	}); err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	old := make(map[digest.Digest]Entry)
	if err := x.Each(func(d digest.Digest, e Entry) error {
		old[d] = e
		return nil
	}); err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	wb := x.db.NewWriteBatch()
	defer wb.Cancel()
	for d := range old {
		if _, ok := files[d]; !ok {
			if err := wb.Delete(key(d)); err != nil {
				return fmt.Errorf("rebuild index: %w", err)
			}
		}
	}
	now := time.Now()
	for d, size := range files {
		e, ok := old[d]
		if !ok {
			e.LastAccess = now
		}
		e.Size, e.State = size, StatePresent
		if err := wb.Set(key(d), e.encode()); err != nil {
			return fmt.Errorf("rebuild index: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	return nil
}

func (x *Index) update(d digest.Digest, fn func(e *Entry, found bool) error) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.db.Update(func(txn *badger.Txn) error {
		e, found, err := get(txn, d)
		if err != nil {
			return err
		}
		if err := fn(&e, found); err != nil {
			return err
		}
		if err := txn.Set(key(d), e.encode()); err != nil {
			return fmt.Errorf("index entry %s: %w", d, err)
		}
		return nil
	})
}

const keyPrefix = "blob/"

func key(d digest.Digest) []byte { return []byte(keyPrefix + string(d)) }

func get(txn *badger.Txn, d digest.Digest) (Entry, bool, error) {
	item, err := txn.Get(key(d))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("index entry %s: %w", d, err)
	}
	var e Entry
	err = item.Value(func(v []byte) error {
		e, err = decode(v)
		return err
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("index entry %s: %w", d, err)
	}
	return e, true, nil
}

// An entry is stored as version 1, state, then big-endian size, last access
// and verification (unix nanoseconds, 0 for never), and four reserved
// bytes, written as zero and never read: indexes already written keep their
// length (an unused pin count was kept there; pins are config patterns,
// registry/pins.go).
const entryLen = 1 + 1 + 8 + 8 + 8 + 4

func (e Entry) encode() []byte {
	b := make([]byte, 0, entryLen)
	b = append(b, 1, byte(e.State))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Size))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(e.LastAccess)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(e.Verified)))
	b = binary.BigEndian.AppendUint32(b, 0)
	return b
}

func decode(b []byte) (Entry, error) {
	if len(b) != entryLen || b[0] != 1 {
		return Entry{}, opm.Errorf(opm.ErrInvalid, "undecodable entry (%d bytes)", len(b))
	}
	return Entry{
		State:      State(b[1]),
		Size:       int64(binary.BigEndian.Uint64(b[2:])),
		LastAccess: fromUnixNano(int64(binary.BigEndian.Uint64(b[10:]))),
		Verified:   fromUnixNano(int64(binary.BigEndian.Uint64(b[18:]))),
	}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// slogLogger routes Badger's warnings and errors to slog and drops the rest.
type slogLogger struct{}

func (slogLogger) Errorf(f string, a ...any) {
	slog.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (slogLogger) Warningf(f string, a ...any) {
	slog.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (slogLogger) Infof(string, ...any)  {}
func (slogLogger) Debugf(string, ...any) {}

// partialPrefix keys the record of a partial blob (partial.go): which of
// its chunks are in its file.
const partialPrefix = "partial/"

// partialRecord is what the index keeps of a partial blob: the digest of
// the chunk list its chunks were checked against, and a bitmap of the
// chunks present (bit i%8 of byte i/8 for chunk i).
type partialRecord struct {
	list digest.Digest
	have []byte
}

// getPartial returns the record of the partial blob d; found is false if
// there is none (or it does not decode: it is then as good as none).
func (x *Index) getPartial(d digest.Digest) (rec partialRecord, found bool, err error) {
	err = x.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(partialPrefix + string(d)))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			// version 1, the list's sha256 (32 bytes), the bitmap
			if len(v) < 33 || v[0] != 1 {
				return nil
			}
			rec = partialRecord{list: digest.NewDigestFromBytes(digest.SHA256, v[1:33]), have: append([]byte(nil), v[33:]...)}
			found = true
			return nil
		})
	})
	if err != nil {
		err = fmt.Errorf("index partial %s: %w", d, err)
	}
	return rec, found, err
}

// putPartial records which chunks of the partial blob d are present.
func (x *Index) putPartial(d digest.Digest, rec partialRecord) error {
	raw, err := hex.DecodeString(rec.list.Encoded())
	if err != nil || len(raw) != 32 {
		return opm.Errorf(opm.ErrInvalid, "chunk list digest %q", rec.list)
	}
	v := append(append([]byte{1}, raw...), rec.have...)
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(partialPrefix+string(d)), v) }); err != nil {
		return fmt.Errorf("index partial %s: %w", d, err)
	}
	return nil
}

// deletePartial removes the record of the partial blob d, if any.
func (x *Index) deletePartial(d digest.Digest) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(partialPrefix + string(d))) }); err != nil {
		return fmt.Errorf("index partial %s: %w", d, err)
	}
	return nil
}
