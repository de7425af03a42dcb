package layout

import (
	"github.com/opencontainers/go-digest"
)

// The trailers that carry the facts of a commit (docs/design.md §3):
//
//	push acme/web/site:v1.2.0
//
//	Opm-Digest: sha256:…         the digest a tag or manifest now holds
//	Opm-Previous: sha256:…       what the tag held before (moved or removed)
//	Opm-Source: ns/p/r:tag       opm tag: the reference the new tag was taken from
//	Opm-Synced-From: <url>@<c>   a filtered mirror: the source and its commit
//	Opm-Via: oci                 written through the OCI distribution API
const (
	TrailerDigest     = "Opm-Digest"
	TrailerPrevious   = "Opm-Previous"
	TrailerSource     = "Opm-Source"
	TrailerSyncedFrom = "Opm-Synced-From"
	TrailerVia        = "Opm-Via"
)

// Facts are what a commit's trailers say.
type Facts struct {
	Digest     digest.Digest
	Previous   digest.Digest
	Source     string
	SyncedFrom string
	Via        string
}

// Trailers calls add with each fact that is set, as a trailer, in the
// order of the constants above: a commit message is its subject (what
// happened) and these.
func (f Facts) Trailers(add func(key, value string)) {
	for _, t := range [...]struct{ k, v string }{
		{TrailerDigest, string(f.Digest)},
		{TrailerPrevious, string(f.Previous)},
		{TrailerSource, f.Source},
		{TrailerSyncedFrom, f.SyncedFrom},
		{TrailerVia, f.Via},
	} {
		if t.v != "" {
			add(t.k, t.v)
		}
	}
}

// ParseFacts reads the facts of a commit message's trailers (get returns a
// trailer's value, "" when the message has none).
func ParseFacts(get func(key string) string) Facts {
	var f Facts
	f.Digest = digest.Digest(get(TrailerDigest))
	f.Previous = digest.Digest(get(TrailerPrevious))
	f.Source = get(TrailerSource)
	f.SyncedFrom = get(TrailerSyncedFrom)
	f.Via = get(TrailerVia)
	return f
}
