package gitmeta

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/openpm/opm"
)

// TestFetchRefusesObjectBomb: an origin whose main holds a blob over the
// per-file limit (zeros: 64 KiB on the wire) is refused at fetch from the
// object's header, without inflating it (go-git inflated it whole to index
// the pack: a gigabyte of zeros took a gigabyte), and nothing of the fetch
// is applied: the tracking ref stays, no pack is left. The origin mended,
// the next fetch works.
func TestFetchRefusesObjectBomb(t *testing.T) {
	ctx := context.Background()
	origin := newRepo(t)
	good := commit(t, origin, "one", set("a/b/c/tags/v1.json", "1"))
	home := newRepo(t)
	if got, err := home.Fetch(ctx, origin.Path(), TrackingRef("origin")); err != nil || got != good {
		t.Fatalf("fetch: %v %v", got, err)
	}
	packs := func() []string {
		m, _ := filepath.Glob(filepath.Join(home.Path(), "objects", "pack", "*"))
		return m
	}
	before := packs()
	bomb := commit(t, origin, "bomb", set("a/b/c/junk", string(make([]byte, opm.MaxManifestSize+1))))
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err := home.Fetch(ctx, origin.Path(), TrackingRef("origin"))
	runtime.ReadMemStats(&m1)
	if err == nil || !strings.Contains(err.Error(), "over the 67108864-byte limit") {
		t.Errorf("fetch of a %d-byte object: %v, want a refusal naming the limit", opm.MaxManifestSize+1, err)
	}
	if a := m1.TotalAlloc - m0.TotalAlloc; a > opm.MaxManifestSize/2 {
		t.Errorf("the fetch allocated %d MiB: the object was inflated", a>>20)
	}
	if h, err := readRef(home.Path(), TrackingRef("origin")); err != nil || h != good {
		t.Errorf("tracking ref %v %v, want %s (nothing of a refused fetch applied)", h, err, good)
	}
	if after := packs(); !slicesEqual(after, before) {
		t.Errorf("packs %v after the refused fetch, want %v", after, before)
	}
	if _, err := home.Snapshot(bomb); err == nil {
		t.Error("the refused commit is readable in the home")
	}
	if err := origin.SetHead(ctx, bomb, good); err != nil {
		t.Fatal(err)
	}
	next := commit(t, origin, "two", set("a/b/c/tags/v2.json", "2"))
	if got, err := home.Fetch(ctx, origin.Path(), TrackingRef("origin")); err != nil || got != next {
		t.Fatalf("fetch of the mended origin: %v %v", got, err)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestFetchCheckedLeavesRefOnRefusal: a fetch whose commit its check
// refuses leaves the tracking ref where it was; one it accepts moves it.
func TestFetchCheckedLeavesRefOnRefusal(t *testing.T) {
	ctx := context.Background()
	origin := newRepo(t)
	c1 := commit(t, origin, "one", set("a/b/c/tags/v1.json", "1"))
	home := newRepo(t)
	ok := func(Hash) error { return nil }
	if got, err := home.FetchChecked(ctx, origin.Path(), TrackingRef("origin"), ok); err != nil || got != c1 {
		t.Fatalf("fetch: %v %v", got, err)
	}
	c2 := commit(t, origin, "two", set("a/b/c/junk", "x"))
	no := errors.New("refused")
	got, err := home.FetchChecked(ctx, origin.Path(), TrackingRef("origin"), func(h Hash) error {
		if h != c2 {
			t.Errorf("check of %s, want %s", h, c2)
		}
		return no
	})
	if !errors.Is(err, no) || got != c2 {
		t.Errorf("refused fetch: %v %v", got, err)
	}
	if h, err := readRef(home.Path(), TrackingRef("origin")); err != nil || h != c1 {
		t.Errorf("tracking ref %v %v after a refusal, want %s", h, err, c1)
	}
	if m, _ := filepath.Glob(filepath.Join(home.Path(), "refs", "remotes", "origin", "*")); len(m) != 1 {
		t.Errorf("refs left: %v", m)
	}
	if got, err := home.FetchChecked(ctx, origin.Path(), TrackingRef("origin"), ok); err != nil || got != c2 {
		t.Fatalf("fetch: %v %v", got, err)
	}
	if h, _ := readRef(home.Path(), TrackingRef("origin")); h != c2 {
		t.Errorf("tracking ref %v, want %s", h, c2)
	}
}

// TestCheckPack: sizes are read from headers: a whole object's, and the
// size of the object a delta makes (a few bytes of instructions can
// make a gigabyte); neither is inflated whole.
func TestCheckPack(t *testing.T) {
	obj := func(typ byte, size int64, extra []byte, data []byte) []byte {
		b := []byte{typ<<4 | byte(size&0xf)}
		for size >>= 4; size > 0; size >>= 7 {
			b[len(b)-1] |= 0x80
			b = append(b, byte(size&0x7f))
		}
		b = append(b, extra...)
		var z bytes.Buffer
		w := zlib.NewWriter(&z)
		w.Write(data)
		w.Close()
		return append(b, z.Bytes()...)
	}
	uvarint := func(v int64) []byte {
		var b []byte
		for ; v >= 0x80; v >>= 7 {
			b = append(b, byte(v)|0x80)
		}
		return append(b, byte(v))
	}
	pack := func(objs ...[]byte) *bytes.Reader {
		b := []byte{'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, byte(len(objs))}
		for _, o := range objs {
			b = append(b, o...)
		}
		return bytes.NewReader(append(b, make([]byte, 20)...))
	}
	const blob, ofsDelta = 3, 6
	base := obj(blob, 3, nil, []byte("abc"))
	delta := func(target int64) []byte {
		instr := append(append(uvarint(3), uvarint(target)...), 0x91, 0, 3) // copy 3 bytes from 0
		return obj(ofsDelta, int64(len(instr)), []byte{byte(len(base))}, instr)
	}
	for _, c := range []struct {
		name string
		pack *bytes.Reader
		why  string
	}{
		{"small", pack(base, delta(3)), ""},
		{"at the limit", pack(base, delta(MaxObjectSize)), ""},
		{"whole object over", pack(obj(blob, 1<<30, nil, []byte("abc"))), "is 1073741824 bytes, over the 67108864-byte limit"},
		{"delta target over", pack(base, delta(1<<30)), "object 1 (ofs-delta at offset 28) is 1073741824 bytes"},
	} {
		err := checkPack(c.pack)
		if c.why == "" && err != nil || c.why != "" && (err == nil || !strings.Contains(err.Error(), c.why) || !errors.Is(err, opm.ErrInvalid)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.why)
		}
	}
	if err := checkPack(bytes.NewReader([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01"))); err == nil {
		t.Error("a pack cut short passed")
	}
}
