package registry

// Pins keep the blobs of chosen tags in the local store: git config
// cache.pin of the home, one selector (layout.Selector) per line. A pin is
// the selector, not a list of blobs, so that tags that match it later are
// pinned too.
//
//	[cache]
//		pin = acme/web/site:v1.*
//		pin = tools

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// lruState is the registry's cache-lifecycle state.
type lruState struct {
	mu      sync.Mutex
	tagHead Hash     // head blobTags was computed for
	tags    tagIndex // at tagHead

	pruneMu sync.Mutex // one eviction at a time
}

// Pins returns the pin selectors, in config order.
func (r *Registry) Pins() ([]string, error) {
	cfg, err := r.meta.ReadConfig()
	if err != nil {
		return nil, fsError(err)
	}
	return cfg.GetAll(PinKey)
}

// PinResult says what Pin did.
type PinResult struct {
	Pattern      string   `json:"pattern"`
	Added        bool     `json:"added"` // false: it was pinned already
	Tags         []string `json:"tags"`  // the tags it matches now
	Blobs        int      `json:"blobs"`
	Bytes        int64    `json:"bytes"`
	Fetched      int      `json:"fetched_blobs"`
	FetchedBytes int64    `json:"fetched_bytes"`
}

// Pin records the pin selector p (if it is not there yet) and makes local
// the blobs of the tags it chooses now.
func (r *Registry) Pin(ctx context.Context, p string, progress Progress) (*PinResult, error) {
	sel, err := layout.ParseSelector(p)
	if err != nil {
		return nil, err
	}
	res := &PinResult{Pattern: p, Tags: []string{}}
	err = r.updateConfig(func(cfg *gitmeta.Config) error {
		pins, err := cfg.GetAll(PinKey)
		if err != nil || slices.Contains(pins, p) {
			return err
		}
		res.Added = true
		return cfg.Add(PinKey, p)
	})
	if err != nil {
		return nil, err
	}
	tags, err := r.blobTags(ctx)
	if err != nil {
		return res, err
	}
	seenTag := map[string]bool{}
	var want []opm.Descriptor
	for d, refs := range tags.refs {
		matched := false
		for _, ref := range refs {
			if sel.Match(ref) {
				matched = true
				seenTag[ref.String()] = true
			}
		}
		if !matched {
			continue
		}
		res.Blobs++
		res.Bytes += tags.size[d]
		if !r.local.Has(d) {
			want = append(want, opm.Descriptor{Digest: d, Size: tags.size[d]})
		}
	}
	for ref := range seenTag {
		res.Tags = append(res.Tags, ref)
	}
	slices.Sort(res.Tags)
	if len(want) == 0 {
		return res, nil
	}
	if r.cache == nil {
		return res, opm.Errorf(opm.ErrNotFound, "pinned %s, but %d of its blobs are not in the local store and this home has no bucket to fetch them from (opm remote add origin --meta URL --blobs URL, or opm config opm.blobs URL)", p, len(want))
	}
	var mu sync.Mutex
	err = r.fetchAll(ctx, want, tags.chunks, progress, func(b opm.Descriptor) {
		mu.Lock()
		res.Fetched++
		res.FetchedBytes += b.Size
		mu.Unlock()
	})
	if err != nil {
		return res, fmt.Errorf("pinned %s, but fetching its blobs failed (opm cache pin again retries): %w", p, err)
	}
	return res, nil
}

// Unpin removes the pin selector p, exactly as it was pinned. Its blobs
// stay in the local store until eviction needs the room.
func (r *Registry) Unpin(p string) error {
	return r.updateConfig(func(cfg *gitmeta.Config) error {
		pins, err := cfg.GetAll(PinKey)
		if err != nil {
			return err
		}
		if !slices.Contains(pins, p) {
			if len(pins) == 0 {
				return opm.Errorf(opm.ErrNotFound, "%q is not pinned (nothing is; opm cache pin SELECTOR pins)", p)
			}
			return opm.Errorf(opm.ErrNotFound, "%q is not pinned (pinned: %s)", p, strings.Join(pins, ", "))
		}
		return cfg.Unset(PinKey, func(v string) bool { return v == p })
	})
}

// tagIndex is which tags of the head name each blob.
type tagIndex struct {
	refs   map[digest.Digest][]opm.Reference
	size   map[digest.Digest]int64
	chunks map[digest.Digest]opm.Descriptor // a blob's chunk list
}

// blobTags maps every blob named by a tag of the head to those tags. It is
// kept until the head moves. A tag file that does not parse is skipped
// with a warning (opm fsck reports it).
func (r *Registry) blobTags(ctx context.Context) (tagIndex, error) {
	v, err := r.View()
	if err != nil {
		return tagIndex{}, err
	}
	r.lru.mu.Lock()
	defer r.lru.mu.Unlock()
	if r.lru.tags.refs != nil && r.lru.tagHead == v.Commit() {
		return r.lru.tags, nil
	}
	ti := tagIndex{refs: map[digest.Digest][]opm.Reference{}, size: map[digest.Digest]int64{}, chunks: map[digest.Digest]opm.Descriptor{}}
	err = v.Walk(ctx, func(m *layout.StoredManifest) error {
		if m.ByDigest() {
			return nil // kept by digest: no tag to match a pin
		}
		if m.Err != nil {
			slog.Warn("cache: tag skipped, its manifest does not parse", "tag", m.Ref, "err", m.Err)
			return nil
		}
		blobs := m.Blobs()
		for _, b := range blobs {
			ti.refs[b.Digest] = append(ti.refs[b.Digest], m.Ref)
			ti.size[b.Digest] = b.Size
		}
		maps.Copy(ti.chunks, opm.ChunkListsOf(blobs))
		return nil
	}, nil)
	if err != nil {
		return tagIndex{}, err
	}
	r.lru.tagHead, r.lru.tags = v.Commit(), ti
	return ti, nil
}

// pinned returns the blobs of the tags a pin selector chooses.
func (r *Registry) pinned(ctx context.Context) (map[digest.Digest]bool, []string, error) {
	pins, err := r.Pins()
	if err != nil {
		return nil, nil, err
	}
	out := map[digest.Digest]bool{}
	if len(pins) == 0 {
		return out, pins, nil
	}
	var sels []layout.Selector
	for _, p := range pins {
		s, err := layout.ParseSelector(p)
		if err != nil {
			slog.Warn("cache: pin skipped", "err", err) // written by hand: opm checks what it writes
			continue
		}
		sels = append(sels, s)
	}
	f := layout.Filter{Include: sels}
	tags, err := r.blobTags(ctx)
	if err != nil {
		return nil, nil, err
	}
	for d, refs := range tags.refs {
		if len(sels) > 0 && slices.ContainsFunc(refs, f.Match) {
			out[d] = true
		}
	}
	return out, pins, nil
}
