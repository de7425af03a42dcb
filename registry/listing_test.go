package registry

import (
	"strings"
	"testing"
	"time"
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
