package registry

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
)

// TagResult says what a tag or rm did.
type TagResult struct {
	Ref       opm.Reference `json:"ref"`
	Digest    digest.Digest `json:"digest,omitempty"`
	Previous  digest.Digest `json:"previous,omitempty"`
	Commit    string        `json:"commit"`
	Committed bool          `json:"committed"`
}

// Tag points dst at the package src names. No blob is copied: the package's
// blobs are already in the registry.
func (r *Registry) Tag(ctx context.Context, src, dst opm.Reference) (*TagResult, error) {
	if dst.Tag == "" {
		return nil, fmt.Errorf("tag %s: the destination needs a :tag: %w", dst, opm.ErrInvalid)
	}
	p, err := r.Resolve(src)
	if err != nil {
		return nil, err
	}
	commit, prev, committed, err := r.setTag(ctx, dst, p.Bytes, fmt.Sprintf("tag %s from %s", dst, src),
		[]gitmeta.Trailer{{Key: "Opm-Source", Value: src.String()}})
	if err != nil {
		return nil, err
	}
	return &TagResult{Ref: dst, Digest: p.Digest, Previous: prev, Commit: commit.String(), Committed: committed}, nil
}

// Remove deletes a tag as a commit. Its blobs stay until garbage collection.
func (r *Registry) Remove(ctx context.Context, ref opm.Reference) (*TagResult, error) {
	if ref.Tag == "" {
		return nil, fmt.Errorf("rm %s: removes a tag, give ns/project/repo:tag: %w", ref, opm.ErrInvalid)
	}
	p := opm.TagPath(ref.Repository, ref.Tag)
	var prev digest.Digest
	commit, committed, err := r.Meta.Update(ctx, r.Author(ctx), func(s *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		cur, err := tagDigest(s, p)
		if err != nil {
			return nil, gitmeta.Message{}, err
		}
		if cur == "" {
			return nil, gitmeta.Message{}, fmt.Errorf("%s: no such tag: %w", ref, opm.ErrNotFound)
		}
		if prev != "" && cur != prev {
			return nil, gitmeta.Message{}, fmt.Errorf("%s was changed by another writer while this one ran: %w", ref, opm.ErrConflict)
		}
		prev = cur
		return []gitmeta.Change{{Path: p, Delete: true}}, gitmeta.Message{
			Subject:  "rm " + ref.String(),
			Trailers: []gitmeta.Trailer{{Key: "Opm-Previous", Value: cur.String()}},
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return &TagResult{Ref: ref, Previous: prev, Commit: commit.String(), Committed: committed}, nil
}
