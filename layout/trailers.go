package layout

import (
	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm/gitmeta"
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

// Message is a commit message: the subject (what happened) and the facts
// as trailers, in the order of the constants above.
func Message(subject string, f Facts) gitmeta.Message {
	m := gitmeta.Message{Subject: subject}
	add := func(k, v string) {
		if v != "" {
			m.Trailers = append(m.Trailers, gitmeta.Trailer{Key: k, Value: v})
		}
	}
	add(TrailerDigest, string(f.Digest))
	add(TrailerPrevious, string(f.Previous))
	add(TrailerSource, f.Source)
	add(TrailerSyncedFrom, f.SyncedFrom)
	add(TrailerVia, f.Via)
	return m
}

// ParseFacts reads the facts of a commit message's trailers.
func ParseFacts(m gitmeta.Message) Facts {
	var f Facts
	get := func(k string) string { v, _ := m.Trailer(k); return v }
	f.Digest = digest.Digest(get(TrailerDigest))
	f.Previous = digest.Digest(get(TrailerPrevious))
	f.Source = get(TrailerSource)
	f.SyncedFrom = get(TrailerSyncedFrom)
	f.Via = get(TrailerVia)
	return f
}
