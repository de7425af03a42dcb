package gitmeta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/openpm/opm"
)

var tester = Signature{Name: "Test", Email: "test@example.com"}

func newRepo(t testing.TB) *Repo {
	t.Helper()
	r, err := Init(filepath.Join(t.TempDir(), "meta.git"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// commit applies changes in one Update and returns the new head.
func commit(t testing.TB, r *Repo, subject string, changes ...Change) plumbing.Hash {
	t.Helper()
	h, committed, err := r.Update(context.Background(), tester, func(*Snapshot) ([]Change, Message, error) {
		return changes, Message{Subject: subject}, nil
	})
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if !committed {
		t.Fatalf("%s: nothing committed", subject)
	}
	return h
}

func set(path, data string) Change { return Change{Path: path, Data: []byte(data)} }
func del(path string) Change       { return Change{Path: path, Delete: true} }

// git runs the real git CLI in dir and returns its trimmed output.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
		"GIT_AUTHOR_NAME=cli", "GIT_AUTHOR_EMAIL=cli@example.com",
		"GIT_COMMITTER_NAME=cli", "GIT_COMMITTER_EMAIL=cli@example.com")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func fsck(t testing.TB, r *Repo) {
	t.Helper()
	if out := git(t, r.Path(), "fsck", "--strict", "--no-dangling"); out != "" {
		t.Errorf("git fsck: %s", out)
	}
}

func snapshot(t testing.TB, r *Repo) *Snapshot {
	t.Helper()
	head, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Snapshot(head)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readString(t testing.TB, s *Snapshot, path string) string {
	t.Helper()
	data, err := s.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestInitOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	if _, err := Open(dir); !errors.Is(err, opm.ErrNotFound) {
		t.Fatalf("Open of a missing repository: %v, want ErrNotFound", err)
	}
	r, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if head, err := r.Head(); err != nil || !head.IsZero() {
		t.Fatalf("Head of a new repository = %v, %v; want zero", head, err)
	}
	if got := git(t, dir, "symbolic-ref", "HEAD"); got != string(Branch) {
		t.Errorf("HEAD -> %s, want %s", got, Branch)
	}
	if got := git(t, dir, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Errorf("bare = %s", got)
	}
	h := commit(t, r, "first", set("a/b", "x"))
	r2, err := Init(dir) // idempotent
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if head, _ := r2.Head(); head != h {
		t.Errorf("Init of an existing repository lost main: %s, want %s", head, h)
	}
	s, err := r.Snapshot(plumbing.ZeroHash)
	if err != nil {
		t.Fatal(err)
	}
	if entries, err := s.ReadDir(""); err != nil || len(entries) != 0 {
		t.Errorf("ReadDir of the empty snapshot = %v, %v", entries, err)
	}
}

func TestRoundTrip(t *testing.T) {
	r := newRepo(t)
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	c1, committed, err := r.Update(context.Background(), Signature{Name: "A", Email: "a@x", When: when},
		func(s *Snapshot) ([]Change, Message, error) {
			if !s.Commit().IsZero() {
				t.Errorf("first snapshot is of %s", s.Commit())
			}
			return []Change{
				set("ns/namespace.json", `{"description":"n"}`),
				set("ns/proj/repo/tags/v1.json", "one"),
				set("ns/proj/repo/tags/v2.json", "two"),
				set("ns/proj/repo/repository.json", "{}"),
				set("ns/proj/repo-x/tags/a.json", "a"), // "repo-x" sorts before "repo/" in git order
			}, Message{Subject: "push ns/proj/repo:v1"}, nil
		})
	if err != nil || !committed {
		t.Fatalf("Update = %v, %v", committed, err)
	}
	s, err := r.Snapshot(c1)
	if err != nil {
		t.Fatal(err)
	}
	if !s.When().Equal(when) {
		t.Errorf("When = %v, want %v", s.When(), when)
	}
	if got := readString(t, s, "ns/proj/repo/tags/v2.json"); got != "two" {
		t.Errorf("v2 = %q", got)
	}
	entries, err := s.ReadDir("ns/proj")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name != "repo" || entries[1].Name != "repo-x" || !entries[0].Dir {
		t.Errorf("ReadDir(ns/proj) = %+v, want repo, repo-x sorted by name", entries)
	}
	if e, err := s.Stat("ns/proj/repo/tags/v1.json"); err != nil || e.Dir || e.Hash != plumbing.ComputeHash(plumbing.BlobObject, []byte("one")) {
		t.Errorf("Stat = %+v, %v", e, err)
	}
	for _, p := range []string{"ns/proj/repo/tags/v3.json", "nope", "ns/namespace.json/x"} {
		if _, err := s.ReadFile(p); !errors.Is(err, opm.ErrNotFound) {
			t.Errorf("ReadFile(%s) = %v, want ErrNotFound", p, err)
		}
	}
	if _, err := s.ReadFile("ns/proj"); !errors.Is(err, opm.ErrInvalid) {
		t.Errorf("ReadFile of a directory = %v, want ErrInvalid", err)
	}
	if _, err := s.ReadDir("ns/namespace.json"); !errors.Is(err, opm.ErrInvalid) {
		t.Errorf("ReadDir of a file = %v, want ErrInvalid", err)
	}
	for _, p := range []string{"/ns", "ns/", "ns//proj", "ns/../x", "./ns", "ns/.git/x", "a\x00b"} {
		if _, err := s.Stat(p); !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("Stat(%q) = %v, want ErrInvalid", p, err)
		}
	}
	fsck(t, r)
	if got := git(t, r.Path(), "cat-file", "-p", "main:ns/proj/repo/tags/v1.json"); got != "one" {
		t.Errorf("git cat-file = %q", got)
	}

	// Modify one file, delete another; the snapshot of c1 is unchanged.
	c2 := commit(t, r, "retag", set("ns/proj/repo/tags/v1.json", "uno"), del("ns/proj/repo/tags/v2.json"))
	s2, _ := r.Snapshot(c2)
	if got := readString(t, s2, "ns/proj/repo/tags/v1.json"); got != "uno" {
		t.Errorf("v1 = %q", got)
	}
	if _, err := s2.Stat("ns/proj/repo/tags/v2.json"); !errors.Is(err, opm.ErrNotFound) {
		t.Errorf("deleted file: %v", err)
	}
	if got := readString(t, s, "ns/proj/repo/tags/v1.json"); got != "one" {
		t.Errorf("old snapshot changed: %q", got)
	}

	// Deleting the last file of a tree removes it and its parents that become empty.
	c3 := commit(t, r, "delete repo-x", del("ns/proj/repo-x/tags/a.json"))
	s3, _ := r.Snapshot(c3)
	if _, err := s3.Stat("ns/proj/repo-x"); !errors.Is(err, opm.ErrNotFound) {
		t.Errorf("empty directory kept: %v", err)
	}
	// Deleting a directory removes its subtree; deleting everything leaves the empty tree.
	c4 := commit(t, r, "delete all", del("ns"))
	if got := git(t, r.Path(), "ls-tree", "-r", c4.String()); got != "" {
		t.Errorf("tree after deleting everything: %q", got)
	}
	fsck(t, r)
	want := "delete all\ndelete repo-x\nretag\npush ns/proj/repo:v1"
	if got := git(t, r.Path(), "log", "--format=%s", "main"); got != want {
		t.Errorf("git log:\n%s\nwant:\n%s", got, want)
	}
	if got := git(t, r.Path(), "rev-list", "--parents", "--count", "main"); got != "4" {
		t.Errorf("commits = %s", got)
	}
}

func TestInvalidChanges(t *testing.T) {
	r := newRepo(t)
	commit(t, r, "init", set("a/file", "x"))
	for name, changes := range map[string][]Change{
		"empty path":         {set("", "x")},
		"dot-dot":            {set("a/../b", "x")},
		"dot-git":            {set(".GIT/config", "x")},
		"file over dir":      {set("a", "x")},
		"below a file":       {set("a/file/x", "x")},
		"file and its child": {set("b", "x"), set("b/c", "y")},
		"child and its file": {set("b/c", "y"), set("b", "x")},
	} {
		_, committed, err := r.Update(context.Background(), tester, func(*Snapshot) ([]Change, Message, error) {
			return changes, Message{Subject: name}, nil
		})
		if !errors.Is(err, opm.ErrInvalid) || committed {
			t.Errorf("%s: %v, %v; want ErrInvalid", name, committed, err)
		}
	}
	for name, msg := range map[string]Message{
		"empty subject":     {},
		"two-line subject":  {Subject: "a\nb"},
		"bad trailer key":   {Subject: "s", Trailers: []Trailer{{Key: "A B", Value: "v"}}},
		"two-line trailer":  {Subject: "s", Trailers: []Trailer{{Key: "K", Value: "a\nb"}}},
		"body as trailers":  {Subject: "s", Body: "text\n\nKey: v"},
		"body with newline": {Subject: "s", Body: "\ntext"},
	} {
		_, _, err := r.Update(context.Background(), tester, func(*Snapshot) ([]Change, Message, error) {
			return []Change{set("z", "z")}, msg, nil
		})
		if !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	_, _, err := r.Update(context.Background(), Signature{Name: "a <b>", Email: "e"}, nil)
	if !errors.Is(err, opm.ErrInvalid) {
		t.Errorf("bad signature: %v, want ErrInvalid", err)
	}
	fsck(t, r)
}

func TestNoopUpdate(t *testing.T) {
	r := newRepo(t)
	h := commit(t, r, "init", set("a/b.json", "x"))
	for name, changes := range map[string][]Change{
		"no changes":      nil,
		"same content":    {set("a/b.json", "x")},
		"missing delete":  {del("a/c.json"), del("z/y")},
		"set then revert": {set("a/b.json", "y"), set("a/b.json", "x")},
	} {
		got, committed, err := r.Update(context.Background(), tester, func(*Snapshot) ([]Change, Message, error) {
			return changes, Message{Subject: name}, nil
		})
		if err != nil || committed || got != h {
			t.Errorf("%s: %s, %v, %v; want the head, no commit", name, got, committed, err)
		}
	}
	if head, _ := r.Head(); head != h {
		t.Errorf("head moved to %s", head)
	}
	// No objects were written either.
	if out := git(t, r.Path(), "count-objects"); !strings.HasPrefix(out, "4 objects") {
		t.Errorf("count-objects: %s, want 4 objects (blob, 2 trees, commit)", out)
	}
}

func TestTreeReuse(t *testing.T) {
	r := newRepo(t)
	commit(t, r, "init", set("a/p/r/tags/1.json", "1"), set("b/p/r/tags/1.json", "b1"), set("b/namespace.json", "{}"))
	before := snapshot(t, r)
	objectsBefore := git(t, r.Path(), "count-objects")
	commit(t, r, "push a", set("a/p/r/tags/2.json", "2"))
	after := snapshot(t, r)
	stat := func(s *Snapshot, p string) plumbing.Hash {
		e, err := s.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return e.Hash
	}
	if stat(before, "b") != stat(after, "b") {
		t.Error("b's subtree was rebuilt by a change under a")
	}
	for _, p := range []string{"", "a", "a/p", "a/p/r", "a/p/r/tags"} {
		if stat(before, p) == stat(after, p) {
			t.Errorf("%q did not change", p)
		}
	}
	if stat(before, "a/p/r/tags/1.json") != stat(after, "a/p/r/tags/1.json") {
		t.Error("unchanged file got a new hash")
	}
	// Only the new blob, the four trees along its path, the root and the commit were written.
	var n0, n1 int
	fmt.Sscanf(objectsBefore, "%d objects", &n0)
	fmt.Sscanf(git(t, r.Path(), "count-objects"), "%d objects", &n1)
	if n1-n0 != 7 {
		t.Errorf("%d objects written, want 7", n1-n0)
	}
}

func TestLog(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	tag := "ns/p/r/tags/v1.json"
	digest := []Trailer{{Key: "Opm-Digest", Value: "sha256:1111"}}
	msg := func(subject string, trailers ...Trailer) Message {
		return Message{Subject: subject, Body: "details\n\nmore", Trailers: trailers}
	}
	var commits []plumbing.Hash
	for _, step := range []struct {
		msg    Message
		change Change
	}{
		{msg("push v1", digest...), set(tag, "1")},
		{msg("push other"), set("ns/p/other/tags/v1.json", "o")},
		{msg("push v2"), set("ns/p/r/tags/v2.json", "2")},
		{msg("retag v1", Trailer{"Opm-Digest", "sha256:2222"}, Trailer{"Opm-Previous", "sha256:1111"}), set(tag, "1b")},
		{msg("namespace"), set("ns/namespace.json", "{}")},
		{msg("delete v1"), del(tag)},
	} {
		h, _, err := r.Update(ctx, tester, func(*Snapshot) ([]Change, Message, error) {
			return []Change{step.change}, step.msg, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, h)
	}
	subjects := func(entries []LogEntry) string {
		var s []string
		for _, e := range entries {
			s = append(s, e.Message.Subject)
		}
		return strings.Join(s, ", ")
	}
	for _, tc := range []struct {
		from  plumbing.Hash
		path  string
		limit int
		want  string
	}{
		{plumbing.ZeroHash, tag, 0, "delete v1, retag v1, push v1"},
		{plumbing.ZeroHash, "ns/p/r", 0, "delete v1, retag v1, push v2, push v1"},
		{plumbing.ZeroHash, "ns/p/r", 2, "delete v1, retag v1"},
		{plumbing.ZeroHash, "", 0, "delete v1, namespace, retag v1, push v2, push other, push v1"},
		{commits[2], "", 0, "push v2, push other, push v1"},
		{commits[2], tag, 0, "push v1"},
		{plumbing.ZeroHash, "ns/p/r/tags/v1.json/x", 0, ""},
		{plumbing.ZeroHash, "nope", 0, ""},
	} {
		entries, err := r.Log(ctx, tc.from, tc.path, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := subjects(entries); got != tc.want {
			t.Errorf("Log(%s, %q, %d) = %s; want %s", shortHash(tc.from), tc.path, tc.limit, got, tc.want)
		}
		// git log agrees on paths (it prints nothing for the beyond-a-file path).
		if tc.from.IsZero() && tc.path != "" && tc.limit == 0 {
			if got := strings.ReplaceAll(git(t, r.Path(), "log", "--format=%s", "main", "--", tc.path), "\n", ", "); got != tc.want {
				t.Errorf("git log -- %s = %s; want %s", tc.path, got, tc.want)
			}
		}
	}
	entries, _ := r.Log(ctx, plumbing.ZeroHash, tag, 0)
	retag := entries[1]
	if retag.Commit != commits[3] || retag.Parent != commits[2] || retag.Author != tester.Name || retag.Email != tester.Email {
		t.Errorf("entry = %+v", retag)
	}
	if want := msg("retag v1", Trailer{"Opm-Digest", "sha256:2222"}, Trailer{"Opm-Previous", "sha256:1111"}); !equalMessage(retag.Message, want) {
		t.Errorf("message = %#v, want %#v", retag.Message, want)
	}
	if v, ok := retag.Message.Trailer("opm-previous"); !ok || v != "sha256:1111" {
		t.Errorf("Trailer(opm-previous) = %q, %v", v, ok)
	}
	if got := git(t, r.Path(), "log", "-1", "--format=%(trailers:key=Opm-Digest,valueonly)", commits[3].String()); got != "sha256:2222" {
		t.Errorf("git sees trailer %q", got)
	}
	if _, err := r.Log(ctx, plumbing.NewHash(strings.Repeat("ab", 20)), "", 0); !errors.Is(err, opm.ErrNotFound) {
		t.Errorf("Log from a missing commit: %v", err)
	}
}

func equalMessage(a, b Message) bool {
	return a.Subject == b.Subject && a.Body == b.Body && slices.Equal(a.Trailers, b.Trailers)
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Subject: "push a/b/c:v1"},
		{Subject: "s", Body: "one line"},
		{Subject: "s", Body: "para one\nline two\n\npara two"},
		{Subject: "s", Trailers: []Trailer{{"Opm-Digest", "sha256:abc"}, {"Opm-Synced-From", "https://x/y"}}},
		{Subject: "s", Body: "b\n\nKey: looks like a trailer", Trailers: []Trailer{{"K", ""}}},
	} {
		if err := m.validate(); err != nil {
			t.Errorf("%#v: %v", m, err)
		}
		if got := ParseMessage(m.String()); !equalMessage(got, m) {
			t.Errorf("ParseMessage(%q) = %#v, want %#v", m.String(), got, m)
		}
	}
	if got, want := (Message{Subject: "s", Body: "b", Trailers: []Trailer{{"K", "v"}}}).String(), "s\n\nb\n\nK: v\n"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestDiff(t *testing.T) {
	r := newRepo(t)
	c1 := commit(t, r, "1", set("a/x", "1"), set("a/y", "1"), set("b/z", "1"), set("f", "file"))
	c2 := commit(t, r, "2", set("a/x", "2"), del("a/y"), set("a/w/v", "new"), del("f"), set("g/h", "1"))
	blob := func(s string) plumbing.Hash { return plumbing.ComputeHash(plumbing.BlobObject, []byte(s)) }
	diff, err := r.Diff(c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	want := []DiffEntry{
		{"a/w/v", plumbing.ZeroHash, blob("new")},
		{"a/x", blob("1"), blob("2")},
		{"a/y", blob("1"), plumbing.ZeroHash},
		{"f", blob("file"), plumbing.ZeroHash},
		{"g/h", plumbing.ZeroHash, blob("1")},
	}
	if !slices.Equal(diff, want) {
		t.Errorf("Diff = %v\nwant %v", diff, want)
	}
	// The other way round, and from the empty repository.
	back, _ := r.Diff(c2, c1)
	if len(back) != len(want) || back[1].Old != blob("2") || back[1].New != blob("1") {
		t.Errorf("reverse Diff = %v", back)
	}
	all, _ := r.Diff(plumbing.ZeroHash, c1)
	var paths []string
	for _, d := range all {
		paths = append(paths, d.Path)
	}
	if got := strings.Join(paths, " "); got != "a/x a/y b/z f" {
		t.Errorf("Diff from empty = %s", got)
	}
	if same, _ := r.Diff(c2, c2); len(same) != 0 {
		t.Errorf("Diff of a commit with itself = %v", same)
	}
	// A file replaced by a directory of the same name.
	commit(t, r, "3", del("g/h"))
	c3 := commit(t, r, "4", set("g", "now a file"))
	diff, _ = r.Diff(c2, c3)
	if want := []DiffEntry{{"g", plumbing.ZeroHash, blob("now a file")}, {"g/h", blob("1"), plumbing.ZeroHash}}; !slices.Equal(diff, want) {
		t.Errorf("Diff dir->file = %v, want %v", diff, want)
	}
	fsck(t, r)
}

func TestResolveCommit(t *testing.T) {
	r := newRepo(t)
	h := commit(t, r, "one", set("a", "1"))
	for _, p := range []string{h.String(), h.String()[:7], h.String()[:8], h.String()[:21]} {
		if got, err := r.ResolveCommit(p); err != nil || got != h {
			t.Errorf("ResolveCommit(%s) = %s, %v", p, got, err)
		}
	}
	blobHash := plumbing.ComputeHash(plumbing.BlobObject, []byte("1")).String()
	for p, want := range map[string]error{
		h.String()[:6]:              opm.ErrInvalid,
		strings.ToUpper(h.String()): opm.ErrInvalid,
		"zzzzzzz":                   opm.ErrInvalid,
		"0000000":                   opm.ErrNotFound,
		strings.Repeat("0", 40):     opm.ErrNotFound,
		blobHash[:10]:               opm.ErrNotFound, // not a commit
	} {
		if _, err := r.ResolveCommit(p); !errors.Is(err, want) {
			t.Errorf("ResolveCommit(%s) = %v, want %v", p, err, want)
		}
	}

	// Two commits sharing a 7-digit prefix, found by the birthday bound
	// (about 16k hashes) and stored without a ref.
	tree := plumbing.ComputeHash(plumbing.TreeObject, nil)
	mk := func(i int) plumbing.EncodedObject {
		sig := object.Signature{Name: "x", Email: "y@z", When: time.Unix(int64(i), 0).UTC()}
		c := &object.Commit{Author: sig, Committer: sig, TreeHash: tree, Message: "m\n"}
		o := r.st.NewEncodedObject()
		if err := c.Encode(o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	seen := map[string]int{}
	for i := 0; ; i++ {
		p := mk(i).Hash().String()[:7]
		j, ok := seen[p]
		if !ok {
			seen[p] = i
			continue
		}
		for _, o := range []plumbing.EncodedObject{mk(i), mk(j)} {
			if _, err := r.st.SetEncodedObject(o); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.ResolveCommit(p); !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("ambiguous ResolveCommit(%s) = %v, want ErrInvalid", p, err)
		}
		if got, err := r.ResolveCommit(mk(i).Hash().String()); err != nil || got != mk(i).Hash() {
			t.Errorf("ResolveCommit of the full hash = %s, %v", got, err)
		}
		break
	}
}
