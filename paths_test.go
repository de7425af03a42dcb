package opm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestValidatePathHostile: the classes of name an attacker uses to write
// into a git repository or to make one name read as another are refused;
// their harmless neighbours are not.
func TestValidatePathHostile(t *testing.T) {
	for _, p := range []string{
		".git/hooks/pre-commit", "a/.git/config", ".GIT/config", ".Git",
		".git./config", ".git /config", ".git.. ./x", "git~1/config", "GIT~1",
		".git::$INDEX_ALLOCATION/config", ".g\u200cit/config", ".git\ufeff/x", "\u206a.git",
		"a\u0085b", "a\u009bb", "evil\u202etxt.exe", "a\u2066b", "a\u200fb", "a\u061cb",
	} {
		err := ValidatePath(p)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePath(%q): %v, want refused", p, err)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\u202e\u0085") {
			t.Errorf("ValidatePath(%q): the message repeats the character: %q", p, err)
		}
	}
	for _, p := range []string{".gitignore", ".github/workflows/ci.yml", "git/x", "a.git", ".gitmodules", "x/.git-blame-ignore", "café", "日本語/ファイル"} {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q): %v, want accepted", p, err)
		}
	}
	if err := ValidateSymlink("l", "x\u202e"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a link target with a bidi override: %v", err)
	}
}

// TestCollisionsRefused: titles that a case-insensitive or normalizing file
// system (macOS, Windows) takes for one file are refused at push and on
// reading, naming both.
func TestCollisionsRefused(t *testing.T) {
	for _, pair := range [][2]string{
		{"README", "readme"},
		{"caf\u00e9", "cafe\u0301"}, // NFC and NFD
		{"Dir/a", "dir/b/c"},        // one directory twice
		{"x", "X/y"},                // a file and a directory
		{"STRASSE", "stra\u00dfe"},  // full case folding
	} {
		files := []File{
			{Path: pair[0], Mode: 0o644, Digest: EmptyFileDigest},
			{Path: pair[1], Mode: 0o644, Digest: EmptyFileDigest},
		}
		if pair[0] == "Dir/a" {
			// Two directories that fold to one are fine on their own; a
			// file of the same folded path in both is not.
			files[1].Path = "dir/a"
		}
		_, err := NewPackage(files, nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), pair[0]) {
			t.Errorf("%q and %q: %v, want refused naming them", files[0].Path, files[1].Path, err)
		}
	}
	// Different files stay different.
	if _, err := NewPackage([]File{{Path: "a", Digest: EmptyFileDigest}, {Path: "b", Digest: EmptyFileDigest}, {Path: "A1", Digest: EmptyFileDigest}}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestContentTypeDoesNotSwitchChecks: a manifest without a mediaType is
// what its bytes say (an OCI image manifest), whatever type it is sent
// with: sent as a Docker manifest with a title that climbs out, it used to
// skip the title checks, be stored, and stop opm gc.
func TestContentTypeDoesNotSwitchChecks(t *testing.T) {
	b := []byte(`{"schemaVersion":2,"config":{"mediaType":"x","digest":"` + testDigest + `","size":1},"layers":[{"mediaType":"x","digest":"` + testDigest + `","size":1,"annotations":{"org.opencontainers.image.title":"../escape"}}]}`)
	for _, ct := range []string{MediaTypeDockerManifest, MediaTypeManifest, ""} {
		if _, err := ParseAnyManifest(b, ct); !errors.Is(err, ErrInvalid) {
			t.Errorf("sent as %q: %v, want refused", ct, err)
		}
	}
	ok := []byte(`{"schemaVersion":2,"config":{"mediaType":"x","digest":"` + testDigest + `","size":1},"layers":[]}`)
	if _, err := ParseAnyManifest(ok, MediaTypeDockerManifest); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "without a mediaType") {
		t.Errorf("no mediaType, sent as Docker: %v", err)
	}
	if m, err := ParseAnyManifest(ok, MediaTypeManifest); err != nil || m.MediaType != MediaTypeManifest {
		t.Errorf("no mediaType, sent as OCI: %v %v", m, err)
	}
}

// TestNamesPrintAsThemselves: one rule for text that names things — file
// titles, link targets, artifact and media types: a code point that prints
// as nothing or breaks the line (the format characters, the separators,
// the Hangul fillers) is refused as the bidirectional controls are, with
// one line naming the field and the code point.
func TestNamesPrintAsThemselves(t *testing.T) {
	for _, r := range []rune{0x200b, 0x2028, 0x2029, 0xfeff, 0x00ad, 0x2060, 0x115f, 0x1160, 0x3164, 0xffa0, 0x034f, 0xe0041} {
		p := "a" + string(r) + "b"
		err := ValidatePath(p)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("%U", r)) || strings.Contains(err.Error(), "\n") {
			t.Errorf("title %q: %v, want refused naming %U", p, err, r)
		}
		if err := ValidateSymlink("l", p); !errors.Is(err, ErrInvalid) {
			t.Errorf("link target %q: %v, want refused", p, err)
		}
	}
	// The zero-width non-joiner and joiner spell Persian words and emoji.
	for _, p := range []string{"café", "日本語/ファイル", "한국어", "emoji-🙂", "a b", "Ελληνικά", "می\u200cخواهم.txt", "dev-👩\u200d💻"} {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q): %v, want accepted", p, err)
		}
	}
	d := `{"mediaType":"application/octet-stream","digest":"` + testDigest + `","size":3}`
	for name, c := range map[string]struct{ body, field string }{
		"artifactType": {`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x\u202e","config":` + d + `,"layers":[]}`, "manifest artifactType"},
		"docker":       {`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","artifactType":"a\u2028b","config":` + d + `,"layers":[]}`, "manifest artifactType"},
		"layer type":   {`{"schemaVersion":2,"config":` + d + `,"layers":[{"mediaType":"text/plain\u200b","digest":"` + testDigest + `","size":3}]}`, "manifest layer 0 mediaType"},
		"config type":  {`{"schemaVersion":2,"config":{"mediaType":"a\u3164","digest":"` + testDigest + `","size":1},"layers":[]}`, "manifest config mediaType"},
		"index child":  {`{"schemaVersion":2,"manifests":[{"mediaType":"x","artifactType":"y\u2066z","digest":"` + testDigest + `","size":1}]}`, "manifest manifest 0 artifactType"},
		"title":        {`{"schemaVersion":2,"config":` + d + `,"layers":[{"digest":"` + testDigest + `","size":3,"annotations":{"org.opencontainers.image.title":"a\u00adb"}}]}`, "package path"},
	} {
		_, err := ParseAnyManifest([]byte(c.body), "")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), "U+") {
			t.Errorf("%s: %v, want refused naming %s and the code point", name, err, c.field)
		}
	}
	if _, err := NewPackage([]File{{Path: "f", Digest: EmptyFileDigest, MediaType: "text/x\u2029"}}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("a file's media type with a paragraph separator: %v, want refused", err)
	}
}

// TestPrintable: what is printed to a terminal has every code point the
// rule of names refuses, and every byte that is not UTF-8, escaped; the
// rest is left as it is. OneLine, the line of every error, does the same.
func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain, café, 日本語 🙂":        "plain, café, 日本語 🙂",
		"\x1b]2;owned\x07":          `\x1b]2;owned\x07`,
		"\x1b[2Jtab\there\r\n":      `\x1b[2Jtab\there\r\n`,
		"csi\u009b1m del\x7f":       `csi\u009b1m del\x7f`,
		"evil\u202etxt":             `evil\u202etxt`,
		"a\u200bb\u2028c\u3164d":    `a\u200bb\u2028c\u3164d`,
		"tag\U000e0041 bad\xffbyte": `tag\U000e0041 bad\xffbyte`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
	if got := OneLine(errors.New("line one\x1b[2J\nline two")); got != `line one\x1b[2J; line two` {
		t.Errorf("OneLine: %q", got)
	}
}
