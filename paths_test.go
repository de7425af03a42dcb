package opm

import (
	"errors"
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
