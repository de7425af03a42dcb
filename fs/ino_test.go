package opmfs

import (
	"hash/fnv"
	"testing"
)

// ino must keep giving the numbers hash/fnv gave: inode numbers are stable
// across versions of opm as well as remounts.
func TestInoIsFNV(t *testing.T) {
	for _, parts := range [][]string{{"tree", "live", "acme"}, {"pkg", "live\x00acme/a/b\x00v1\x00abc", "dir/file"}, {"special", ".opm"}, {""}} {
		h := fnv.New64a()
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		want := h.Sum64() >> 1
		if want < 2 {
			want += 2
		}
		if got := ino(parts...); got != want {
			t.Errorf("ino(%q) = %d, want %d", parts, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ino("pkg", "some id", "a/b/c") }); n != 0 {
		t.Errorf("ino allocates %v times", n)
	}
}

func TestTagIno(t *testing.T) {
	key, repo, tag, blob := "live", "acme/web/site", "v1.2", "0123456789abcdef0123456789abcdef01234567"
	if got, want := tagIno(key, repo, tag, blob), ino("pkg", tagID(key, repo, tag, blob), ""); got != want {
		t.Errorf("tagIno = %d, want %d", got, want)
	}
}
