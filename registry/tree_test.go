package registry

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// The facts of a commit survive git's message format: written as trailers,
// read back the same, and facts not set write no trailer.
func TestCommitMessageFacts(t *testing.T) {
	f := layout.Facts{Digest: digest.FromString("a"), Previous: digest.FromString("b"), Source: "a/b/c:v1", SyncedFrom: "/m.git@0123", Via: "oci"}
	m := commitMessage("push a/b/c:v2", f)
	if got := factsOf(gitmeta.ParseMessage(m.String())); got != f {
		t.Fatalf("facts %+v read back as %+v", f, got)
	}
	if m := commitMessage("rm a/b/c:v1", layout.Facts{Previous: f.Previous}); len(m.Trailers) != 1 || m.Trailers[0].Key != layout.TrailerPrevious {
		t.Fatalf("empty facts written: %+v", m.Trailers)
	}
}
