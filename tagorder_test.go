package opm

import (
	"slices"
	"testing"
)

func TestCompareTags(t *testing.T) {
	want := []string{
		"v0.9", "v1.2.0-rc1", "v1.2.0", "v1.9", "v1.9.1", "v1.10", "2.0.0", "v2.0.0",
		"build-1", "build-9", "build-10", "build-010a", "latest", "main", "nightly-2026-12-06",
	}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, CompareTags)
	if !slices.Equal(got, want) {
		t.Fatalf("sorted:\n got  %q\n want %q", got, want)
	}
	for _, a := range want {
		if CompareTags(a, a) != 0 {
			t.Errorf("CompareTags(%q, %q) != 0", a, a)
		}
	}
}
