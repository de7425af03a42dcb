package registry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// Kinds of problem opm fsck reports.
const (
	ProblemBadName         = "bad-name"         // a metadata path the layout does not allow
	ProblemBadManifest     = "bad-manifest"     // a tag or manifest file that does not parse
	ProblemMissingManifest = "missing-manifest" // an index names a manifest the repository lacks
	ProblemMissingBlob     = "missing-blob"     // a blob a manifest names is not in the registry
	ProblemSizeMismatch    = "size-mismatch"    // a stored blob's size is not the size named
	ProblemCorruptBlob     = "corrupt-blob"     // a stored blob's bytes do not hash to its name
	ProblemTempFile        = "temp-file"        // a leftover temporary file (not counted as a problem)
	ProblemBadTrust        = "bad-trust"        // an allowed signers or timestamp file that does not parse
	ProblemStale           = "stale"            // the registry's timestamp has expired
	ProblemBadChunks       = "bad-chunks"       // a file's chunk list does not parse or does not match its bytes
	ProblemBadPartial      = "bad-partial"      // a chunk of a partial blob does not match its chunk list
)

// Problem is one thing fsck found wrong.
type Problem struct {
	Kind   string        `json:"kind"`
	Digest digest.Digest `json:"digest,omitempty"`
	Path   string        `json:"path,omitempty"`  // metadata path, or a file of the home
	Where  string        `json:"where,omitempty"` // "bucket", "local" or "metadata"
	Tags   []string      `json:"tags,omitempty"`  // the references it affects
	Detail string        `json:"detail"`
	// Repaired: --repair fixed it (a corrupt local copy removed when the
	// bucket has a good one, a leftover removed).
	Repaired bool `json:"repaired"`
}

// Leftover reports whether the problem is harmless debris (a temporary file
// of a crashed writer) rather than damage.
func (p Problem) Leftover() bool { return p.Kind == ProblemTempFile }

// Subset selects the blobs whose content --read-data re-hashes: all (the
// zero value), a random Percent, or slice N of M (by digest, so that runs
// 1/M … M/M together cover every blob once).
type Subset struct {
	Percent int // 1..100; 0 with M == 0 means all
	N, M    int
	seed    uint64
}

// ParseSubset reads "" or "100%" (all), "PERCENT%" or "PERCENT" (a random
// share), or "N/M" (slice N of M).
func ParseSubset(s string) (Subset, error) {
	bad := func(why string) (Subset, error) {
		return Subset{}, opm.Errorf(opm.ErrInvalid, "--read-data=%s: %s (want PERCENT%%, e.g. 10%%, or N/M, e.g. 3/10)", s, why)
	}
	if s == "" {
		return Subset{}, nil
	}
	if n, m, ok := strings.Cut(s, "/"); ok {
		ni, err1 := strconv.Atoi(n)
		mi, err2 := strconv.Atoi(m)
		if err1 != nil || err2 != nil || mi < 1 || ni < 1 || ni > mi {
			return bad("N/M needs 1 <= N <= M")
		}
		return Subset{N: ni, M: mi}, nil
	}
	p, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if err != nil || p < 1 || p > 100 {
		return bad("a percentage is 1 to 100")
	}
	if p == 100 {
		return Subset{}, nil
	}
	return Subset{Percent: p, seed: rand.Uint64()}, nil
}

func (s Subset) String() string {
	switch {
	case s.M > 0:
		return fmt.Sprintf("%d/%d", s.N, s.M)
	case s.Percent > 0:
		return fmt.Sprintf("%d%%", s.Percent)
	}
	return "all"
}

// Has reports whether d is in the subset.
func (s Subset) Has(d digest.Digest) bool {
	if s.M == 0 && s.Percent == 0 {
		return true
	}
	b, err := hex.DecodeString(d.Encoded()[:16])
	if err != nil {
		return true
	}
	v := binary.BigEndian.Uint64(b)
	if s.M > 0 {
		return int(v%uint64(s.M)) == s.N-1
	}
	return (v^s.seed)%100 < uint64(s.Percent)
}

// FsckOptions say what Fsck checks.
type FsckOptions struct {
	// Remote checks that remote (its metadata, fetched now, and its
	// bucket) instead of this home.
	Remote string
	// ReadData re-hashes the content of the blobs in Subset; otherwise
	// only existence and sizes are checked.
	ReadData bool
	Subset   Subset
	// Repair removes corrupt local copies (fetched again from the bucket
	// when next read) and leftover temporary files, and rebuilds the index
	// from the files. Not with Remote.
	Repair   bool
	Progress Progress
}

// FsckResult is what Fsck checked and found.
type FsckResult struct {
	Target        string    `json:"target"` // "home" or "remote <name>"
	Commit        string    `json:"commit"`
	Tags          int       `json:"tags"`
	Manifests     int       `json:"manifests"` // kept by digest
	Blobs         int       `json:"blobs"`     // distinct blobs named, each checked
	LocalFiles    int       `json:"local_files"`
	ReadData      string    `json:"read_data,omitempty"` // the subset re-hashed
	BytesVerified int64     `json:"bytes_verified"`
	Problems      []Problem `json:"problems"`
	Repaired      int       `json:"repaired"`
	IndexRebuilt  bool      `json:"index_rebuilt,omitempty"`
}

// Damaged counts the problems that are not leftovers or were not repaired.
func (res *FsckResult) Damaged() int {
	n := 0
	for _, p := range res.Problems {
		if !p.Leftover() && !p.Repaired {
			n++
		}
	}
	return n
}

// tempGrace: a temporary file written to within this long may belong to a
// write in progress, so --repair leaves it.
const tempGrace = 10 * time.Minute

// RemoveLeftovers removes the temporary files of the local store left by
// writers that died: those not written to for tempGrace (as fsck --repair
// does). The daemon calls it when it starts. It returns how many it
// removed.
func (r *Registry) RemoveLeftovers() (int, error) {
	temps, err := r.local.TempFiles()
	if err != nil {
		return 0, err
	}
	n := 0
	cutoff := r.now().Add(-tempGrace)
	for _, t := range temps {
		removed, err := r.local.RemoveTemp(t, cutoff)
		if err != nil {
			return n, err
		}
		if removed {
			n++
		}
	}
	return n, nil
}

// blobUse is a blob named by the metadata: its size and who names it.
type blobUse struct {
	size  int64
	refs  []string // sorted and without repeats once the walk is done
	sizes []int64  // other sizes it is named with, if any
	// chunks are the chunk lists files with these bytes name.
	chunks []digest.Digest
}

// fsckReport gathers into the result what checks running in parallel find.
type fsckReport struct {
	mu  sync.Mutex
	res *FsckResult
}

// found adds a problem.
func (rep *fsckReport) found(p Problem) {
	rep.mu.Lock()
	rep.res.Problems = append(rep.res.Problems, p)
	rep.mu.Unlock()
}

// verified counts n bytes re-hashed.
func (rep *fsckReport) verified(n int64) {
	rep.mu.Lock()
	rep.res.BytesVerified += n
	rep.mu.Unlock()
}

// Fsck checks the metadata (every manifest parses, every name is valid,
// every blob named exists in the registry's store with the right size) and,
// with ReadData, the content of the blobs. It returns an error only when it
// could not check; what it found is in the result.
func (r *Registry) Fsck(ctx context.Context, opts FsckOptions) (*FsckResult, error) {
	res := &FsckResult{Target: "home", Problems: []Problem{}}
	if opts.ReadData {
		res.ReadData = opts.Subset.String()
	}
	commit, remoteBucket, err := r.fsckTarget(ctx, opts, res)
	if err != nil {
		return nil, err
	}
	if remoteBucket != nil {
		defer remoteBucket.Close()
	}
	res.Commit = commit.String()
	rep := &fsckReport{res: res}
	blobs, err := r.checkMetadata(ctx, commit, rep)
	if err != nil {
		return nil, err
	}
	if err := r.checkTrustFiles(commit, rep); err != nil {
		return nil, err
	}

	// The blobs: in the registry's copy (the bucket, else the local
	// store) and, for a home, its local copies.
	bucket, local := r.bucket, r.local
	if remoteBucket != nil {
		bucket, local = remoteBucket, nil
	}
	if err := r.checkBlobs(ctx, blobs, bucket, local, opts, rep); err != nil {
		return nil, err
	}
	if local != nil {
		if err := r.checkLocal(ctx, blobs, opts, rep); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(res.Problems, func(a, b Problem) int {
		return strings.Compare(a.Kind+a.Path+string(a.Digest), b.Kind+b.Path+string(b.Digest))
	})
	for _, p := range res.Problems {
		if p.Repaired {
			res.Repaired++
		}
	}
	return res, nil
}

// fsckTarget finds the commit Fsck checks: the head of this home, or with
// opts.Remote that remote's, fetched now, with its bucket opened (the
// caller closes it) and named in res.Target.
func (r *Registry) fsckTarget(ctx context.Context, opts FsckOptions, res *FsckResult) (Hash, *cas.Bucket, error) {
	if opts.Remote == "" {
		commit, err := r.meta.Head()
		return commit, nil, err
	}
	if opts.Repair {
		return Hash{}, nil, opm.Errorf(opm.ErrInvalid, "--repair mends this home only, not a remote: run opm fsck --remote %s without it, then push or sync what it reports from a home that holds it", opts.Remote)
	}
	rm, err := r.Remote(opts.Remote)
	if err != nil {
		return Hash{}, nil, err
	}
	res.Target = "remote " + rm.Name
	bucket, err := cas.OpenBucket(ctx, rm.Blobs)
	if err != nil {
		return Hash{}, nil, fmt.Errorf("remote %s: %w", rm.Name, err)
	}
	commit, err := r.meta.FetchChecked(ctx, rm.URL, gitmeta.TrackingRef(rm.Name), func(h Hash) error {
		_, err := r.verifyRemote(ctx, r.meta, rm, h)
		return err
	})
	if err != nil {
		bucket.Close()
		return Hash{}, nil, err
	}
	return commit, bucket, nil
}

// checkMetadata walks the metadata of commit: it counts tags and manifests,
// reports bad names, manifests that do not parse and manifests an index
// names but its repository lacks, and returns the blobs the manifests name.
func (r *Registry) checkMetadata(ctx context.Context, commit Hash, rep *fsckReport) (map[digest.Digest]*blobUse, error) {
	s, err := r.meta.Snapshot(commit)
	if err != nil {
		return nil, err
	}
	res := rep.res
	blobs := map[digest.Digest]*blobUse{}
	type indexRef struct {
		ref, repo string
		child     digest.Digest
	}
	var indexes []indexRef
	present := map[string]bool{} // repo path + "@" + digest of every manifest
	err = layout.Walk(ctx, gitTree{s}, func(m *layout.StoredManifest) error {
		if m.ByDigest() {
			res.Manifests++
		} else {
			res.Tags++
		}
		present[m.Repo().Path()+"@"+m.Digest.String()] = true
		if m.Err != nil {
			rep.found(Problem{Kind: ProblemBadManifest, Path: m.Path, Where: "metadata", Tags: []string{m.Ref.String()}, Detail: opm.OneLine(m.Err)})
			return nil
		}
		for _, b := range m.Blobs() {
			u := blobs[b.Digest]
			if u == nil {
				u = &blobUse{size: b.Size}
				blobs[b.Digest] = u
			} else if b.Size != u.size && !slices.Contains(u.sizes, b.Size) {
				u.sizes = append(u.sizes, b.Size)
			}
			u.refs = append(u.refs, m.Ref.String())
		}
		if pkg := m.Manifest.Package(); pkg != nil {
			for _, f := range pkg.Files() {
				if u := blobs[f.Digest]; f.Chunks != nil && u != nil && !slices.Contains(u.chunks, f.Chunks.Digest) {
					u.chunks = append(u.chunks, f.Chunks.Digest)
				}
			}
		}
		for _, c := range m.Manifest.Manifests {
			indexes = append(indexes, indexRef{ref: m.Ref.String(), repo: m.Repo().Path(), child: c.Digest})
		}
		return nil
	}, func(o layout.Oddity) error {
		rep.found(Problem{Kind: ProblemBadName, Path: o.Path, Where: "metadata", Detail: o.Detail})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, ix := range indexes {
		if !present[ix.repo+"@"+ix.child.String()] {
			rep.found(Problem{Kind: ProblemMissingManifest, Digest: ix.child, Where: "metadata", Tags: []string{ix.ref},
				Detail: "the index names a manifest " + ix.repo + " does not keep"})
		}
	}
	res.Blobs = len(blobs)
	for _, u := range blobs {
		slices.Sort(u.refs)
		u.refs = slices.Compact(u.refs)
	}
	return blobs, nil
}

// checkBlobs checks every named blob (checkBlob), in parallel and in
// digest order, drawing the progress of the bytes re-hashed.
func (r *Registry) checkBlobs(ctx context.Context, blobs map[digest.Digest]*blobUse, bucket *cas.Bucket, local *cas.Local, opts FsckOptions, rep *fsckReport) error {
	order := make([]digest.Digest, 0, len(blobs))
	var total int64
	for d, u := range blobs {
		order = append(order, d)
		if opts.ReadData && opts.Subset.Has(d) {
			total += u.size
		}
	}
	slices.Sort(order)
	if opts.Progress != nil {
		opts.Progress.Start(len(order), total)
		defer opts.Progress.Done()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * runtime.GOMAXPROCS(0))
	gctx = WithProgress(gctx, opts.Progress) // as bytes are re-hashed
	for _, d := range order {
		u := blobs[d]
		g.Go(func() error {
			n, err := r.checkBlob(gctx, d, u, bucket, local, opts, rep.found)
			rep.verified(n)
			return err
		})
	}
	return g.Wait()
}

// checkBlob checks one named blob: in the registry's copy and in the local
// store of a home with a bucket. It returns the bytes it re-hashed. Only a
// failure to check (not a problem found) is an error.
func (r *Registry) checkBlob(ctx context.Context, d digest.Digest, u *blobUse, bucket *cas.Bucket, local *cas.Local, opts FsckOptions, found func(Problem)) (int64, error) {
	problem := func(kind, where, detail string) Problem {
		return Problem{Kind: kind, Digest: d, Where: where, Tags: u.refs, Detail: detail}
	}
	if len(u.sizes) > 0 {
		found(problem(ProblemSizeMismatch, "metadata", fmt.Sprintf("named with sizes %d and %v", u.size, u.sizes)))
	}
	hash := opts.ReadData && opts.Subset.Has(d)
	var verified int64

	// The registry's copy.
	where := "local"
	var store cas.Fetcher = local
	stat := func() (int64, error) { return local.Stat(ctx, d) }
	verify := func(w io.Writer) (int64, error) { return local.VerifyTo(ctx, d, w) }
	if bucket != nil {
		where, store = "bucket", bucket
		stat = func() (int64, error) { return bucket.Stat(ctx, d) }
		verify = func(w io.Writer) (int64, error) { return bucket.VerifyTo(ctx, d, w) }
	}
	var p Problem
	size, err := stat()
	switch {
	case errors.Is(err, opm.ErrNotFound):
		found(problem(ProblemMissingBlob, where, "not in the "+where+" store"))
		return 0, nil
	case err != nil:
		return 0, err
	case size != u.size:
		p = problem(ProblemSizeMismatch, where, fmt.Sprintf("%d bytes stored, %d named", size, u.size))
	case hash:
		lists, w := chunkChecks(ctx, store, u, func(detail string) { found(problem(ProblemBadChunks, where, detail)) })
		n, err := verify(w)
		verified += n
		switch {
		case errors.Is(err, opm.ErrIntegrity):
			p = problem(ProblemCorruptBlob, where, opm.OneLine(err))
		case err != nil:
			return verified, err
		default:
			for _, l := range lists {
				if detail := l.mismatch(); detail != "" {
					found(problem(ProblemBadChunks, where, detail))
				}
			}
		}
	}
	if p.Kind == "" {
		return verified, nil
	}
	if opts.Repair && bucket == nil {
		// The local store is the only copy, and this one is wrong: it can
		// only be removed (readers already get an error for it).
		if err := local.Delete(ctx, d); err != nil && !errors.Is(err, opm.ErrNotFound) {
			return verified, err
		}
		p.Detail += "; removed (no bucket holds another copy: push the files again)"
	}
	found(p)
	return verified, nil
}

// chunkCheck is a chunk list a blob's bytes are checked against: its
// chunks are hashed as the blob is re-hashed.
type chunkCheck struct {
	d    digest.Digest
	list *opm.ChunkList
	h    *opm.ChunkHasher
}

// chunkChecks reads and parses the chunk lists of u from store and returns
// them with the writer that hashes their chunks (io.Discard when none); a
// list that cannot be read or parsed is reported to bad.
func chunkChecks(ctx context.Context, store cas.Fetcher, u *blobUse, bad func(detail string)) ([]*chunkCheck, io.Writer) {
	var out []*chunkCheck
	var ws []io.Writer
	for _, ld := range u.chunks {
		b, err := readSmallBlob(ctx, store, ld, opm.MaxChunkListSize)
		var list *opm.ChunkList
		if err == nil {
			list, err = opm.ParseChunkList(b, u.size)
		}
		if err != nil {
			bad(fmt.Sprintf("chunk list %s: %s", ld, opm.OneLine(err)))
			continue
		}
		c := &chunkCheck{d: ld, list: list, h: opm.NewChunkHasher(list.ChunkSize)}
		out = append(out, c)
		ws = append(ws, c.h)
	}
	if len(ws) == 0 {
		return nil, io.Discard
	}
	return out, io.MultiWriter(ws...)
}

// mismatch names the first chunk whose bytes the list gets wrong, "" when
// every one matches.
func (c *chunkCheck) mismatch() string {
	got := c.h.List()
	for i, d := range c.list.Chunks {
		if i >= len(got.Chunks) || got.Chunks[i] != d {
			off, n := c.list.Chunk(i)
			return fmt.Sprintf("chunk list %s: chunk %d (bytes %d to %d) does not match the file", c.d, i, off, off+n)
		}
	}
	return ""
}

// readSmallBlob reads a blob of at most max bytes whole and checks it
// hashes to d.
func readSmallBlob(ctx context.Context, store cas.Fetcher, d digest.Digest, max int64) ([]byte, error) {
	rc, err := store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	switch {
	case err != nil:
		return nil, err
	case int64(len(b)) > max:
		return nil, opm.Errorf(opm.ErrInvalid, "over %d bytes", max)
	case digest.FromBytes(b) != d:
		return nil, opm.Errorf(opm.ErrIntegrity, "content hashes to %s", digest.FromBytes(b))
	}
	return b, nil
}

// checkLocal checks the files of the local store of a home that has a
// bucket (the copies) or not (the only copies, already checked as the
// registry's copy): sizes of named blobs, contents with ReadData, leftover
// temporary files; with Repair it removes what is corrupt and leftover and
// rebuilds the index.
func (r *Registry) checkLocal(ctx context.Context, named map[digest.Digest]*blobUse, opts FsckOptions, rep *fsckReport) error {
	if err := r.checkLocalFiles(ctx, named, opts, rep); err != nil {
		return err
	}
	if err := r.checkTempFiles(opts, rep); err != nil {
		return err
	}
	if opts.ReadData {
		if err := r.checkPartials(ctx, opts, rep); err != nil {
			return err
		}
	}
	if !opts.Repair {
		return nil
	}
	idx, err := r.openIndex(ctx)
	if err != nil {
		return err
	}
	if err := idx.Rebuild(r.local); err != nil {
		return err
	}
	rep.res.IndexRebuilt = true
	return nil
}

// checkLocalFiles checks, in parallel, each blob file of the local store
// not already checked as the registry's copy: its size against the size
// named, and with ReadData its content. With Repair a wrong file is
// removed.
func (r *Registry) checkLocalFiles(ctx context.Context, named map[digest.Digest]*blobUse, opts FsckOptions, rep *fsckReport) error {
	only := r.bucket == nil // the local store is the registry's copy
	var files []cas.BlobInfo
	err := r.local.Walk(func(d digest.Digest, size int64) error {
		files = append(files, cas.BlobInfo{Digest: d, Size: size})
		return nil
	})
	if err != nil {
		return err
	}
	rep.res.LocalFiles = len(files)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, f := range files {
		u := named[f.Digest]
		hash := opts.ReadData && opts.Subset.Has(f.Digest)
		if only && u != nil {
			continue // checked above as the registry's copy
		}
		g.Go(func() error {
			p := Problem{Digest: f.Digest, Path: r.local.Path(f.Digest), Where: "local"}
			if u != nil {
				p.Tags = u.refs
			}
			switch {
			case u != nil && f.Size != u.size:
				p.Kind, p.Detail = ProblemSizeMismatch, fmt.Sprintf("local copy has %d bytes, %d named", f.Size, u.size)
			case hash:
				n, err := r.local.Verify(gctx, f.Digest)
				rep.verified(n)
				if errors.Is(err, opm.ErrNotFound) {
					return nil // evicted meanwhile
				}
				if !errors.Is(err, opm.ErrIntegrity) {
					return err
				}
				p.Kind, p.Detail = ProblemCorruptBlob, opm.OneLine(err)
			default:
				return nil
			}
			if opts.Repair {
				if err := r.local.Delete(gctx, f.Digest); err != nil && !errors.Is(err, opm.ErrNotFound) {
					return err
				}
				// Fixed when the bucket has the blob (it is fetched again) or
				// nothing names it; otherwise its content is lost.
				p.Repaired = !only || u == nil
				p.Detail += "; removed"
				if only && u != nil {
					p.Detail += " (no bucket holds another copy: push the files again)"
				}
			}
			rep.found(p)
			return nil
		})
	}
	return g.Wait()
}

// checkPartials re-hashes the chunks of each partial blob (a big file read
// chunk by chunk, docs/design.md §2) that the index records as present,
// against the chunk list they were checked against when fetched; with
// Repair a partial blob with a wrong chunk is removed (its chunks are
// fetched again when read).
func (r *Registry) checkPartials(ctx context.Context, opts FsckOptions, rep *fsckReport) error {
	parts, err := r.local.Partials()
	if err != nil {
		return err
	}
	for _, part := range parts {
		if part.List == "" || !opts.Subset.Has(part.Digest) {
			continue
		}
		p := Problem{Kind: ProblemBadPartial, Digest: part.Digest, Path: part.Path, Where: "local"}
		list, err := r.ChunkList(ctx, opm.Descriptor{Digest: part.List, Size: -1}, part.Size)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			// Its chunks cannot be checked: as good as wrong.
			p.Detail = "its chunk list cannot be read: " + opm.OneLine(err)
		} else {
			n, err := r.local.VerifyPartial(ctx, part, list)
			rep.verified(n)
			switch {
			case err == nil || errors.Is(err, opm.ErrNotFound):
				continue // good, or gone meanwhile
			case !errors.Is(err, opm.ErrIntegrity):
				return err
			}
			p.Detail = opm.OneLine(err)
		}
		if opts.Repair {
			if err := r.local.DeletePartial(part.Digest); err != nil && !errors.Is(err, opm.ErrNotFound) {
				return err
			}
			p.Repaired, p.Detail = true, p.Detail+"; removed (its chunks are fetched again when read)"
		}
		rep.found(p)
	}
	return nil
}

// checkTempFiles reports the temporary files of the local store; with
// Repair it removes those not written to for tempGrace.
func (r *Registry) checkTempFiles(opts FsckOptions, rep *fsckReport) error {
	temps, err := r.local.TempFiles()
	if err != nil {
		return err
	}
	cutoff := r.now().Add(-tempGrace)
	for _, t := range temps {
		p := Problem{Kind: ProblemTempFile, Path: t.Path, Where: "local",
			Detail: fmt.Sprintf("temporary file of %d bytes, last written %s", t.Size, t.ModTime.UTC().Format(time.RFC3339))}
		if opts.Repair {
			removed, err := r.local.RemoveTemp(t, cutoff)
			if err != nil {
				return err
			}
			if removed {
				p.Repaired, p.Detail = true, p.Detail+"; removed"
			} else {
				p.Detail += fmt.Sprintf("; kept (written in the last %s: a write may be in progress)", tempGrace)
			}
		}
		rep.found(p)
	}
	return nil
}

// checkTrustFiles reports an allowed signers or timestamp file at commit
// that does not parse, and a timestamp that has expired.
func (r *Registry) checkTrustFiles(commit Hash, rep *fsckReport) error {
	if commit.IsZero() {
		return nil
	}
	s, err := r.meta.Snapshot(commit)
	if err != nil {
		return err
	}
	b, err := readTopFile(s, layout.AllowedSigners)
	if err == nil && b != nil {
		_, err = gitmeta.ParseAllowedSigners(b)
	}
	if err != nil {
		rep.found(Problem{Kind: ProblemBadTrust, Path: layout.AllowedSigners, Where: "metadata", Detail: err.Error()})
	}
	until, err := r.freshUntil(r.meta, commit)
	switch {
	case err != nil:
		rep.found(Problem{Kind: ProblemBadTrust, Path: layout.Timestamp, Where: "metadata", Detail: err.Error()})
	case !until.IsZero() && !r.now().Before(until):
		rep.found(Problem{Kind: ProblemStale, Path: layout.Timestamp, Where: "metadata",
			Detail: fmt.Sprintf("the timestamp expired at %s (the publisher renews it with opm timestamp)", until.Format(time.RFC3339))})
	}
	return nil
}
