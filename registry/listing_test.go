package registry

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// TestSortSummariesTies: --sort date orders by when each tag was set,
// oldest first, and tags set in the same second in version order.
func TestSortSummariesTies(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tags := []TagSummary{
		{Name: "latest", Date: t0.Add(time.Second)},
		{Name: "v1.10", Date: t0.Add(time.Second)},
		{Name: "v2.0.0-rc1", Date: t0},
		{Name: "v1.9", Date: t0.Add(time.Second)},
		{Name: "old", Date: t0.Add(-time.Hour)},
	}
	if err := SortSummaries(tags, SortDate); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range tags {
		got = append(got, s.Name)
	}
	if want := "old v2.0.0-rc1 v1.9 v1.10 latest"; strings.Join(got, " ") != want {
		t.Errorf("--sort date: %q, want %q", strings.Join(got, " "), want)
	}
}

// TestListingParsesOnce: a repository's listing (what its page and the
// listing API show: the node and its tag summaries) reads and parses a
// manifest once, not at every view, even when the manifests are too large
// for the manifest cache (each here is 3 MiB: 16 such tags once cost a
// second and more of CPU per anonymous page view); the summaries of a new
// head parse only the manifests it changed.
func TestListingParsesOnce(t *testing.T) {
	r := openHome(t, filepath.Join(t.TempDir(), "h"))
	ctx := context.Background()
	repo, _ := opm.ParseRepository("ns/p/r")
	parts := []string{"ns", "p", "r"}
	commit := func(from, to int) {
		t.Helper()
		var changes []gitmeta.Change
		for i := from; i < to; i++ {
			m, err := opm.NewPackage([]opm.File{{Path: "f", Digest: opm.EmptyFileDigest}},
				map[string]string{"pad": fmt.Sprint(i) + strings.Repeat("x", 3<<20)})
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			changes = append(changes, gitmeta.Change{Path: layout.TagPath(repo, fmt.Sprintf("v%d", i)), Data: b})
		}
		_, _, err := r.meta.Update(ctx, r.Author(ctx), func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
			return changes, gitmeta.Message{Subject: "big tags"}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	page := func() []TagSummary {
		t.Helper()
		v, err := r.View()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Node(parts); err != nil {
			t.Fatal(err)
		}
		sums, err := v.TagSummaries(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		return sums
	}
	parses := func(what string, want int64, fn func()) {
		t.Helper()
		before := r.parses.Load()
		fn()
		if n := r.parses.Load() - before; n != want {
			t.Errorf("%s: %d manifests parsed, want %d", what, n, want)
		}
	}

	commit(0, 4)
	var first []TagSummary
	page()
	parses("three more views of the page", 0, func() {
		first = page()
		for range 2 {
			if again := page(); !reflect.DeepEqual(again, first) {
				t.Fatalf("the summaries changed between views:\n%+v\n%+v", first, again)
			}
		}
	})
	if len(first) != 4 || first[0].Name != "v0" || first[0].Files != 1 || first[0].MediaType != opm.MediaTypeManifest || first[3].Digest == "" {
		t.Fatalf("summaries: %+v", first)
	}
	commit(4, 5)
	parses("the summaries of a head with one more tag", 1, func() {
		v, err := r.View()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.TagSummaries(ctx, repo); err != nil {
			t.Fatal(err)
		}
	})
	page() // the node's counts are kept by the tags tree: a new tree counts again
	parses("that page again", 0, func() { page() })
}
