package opm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

// TestKinds: each kind of failure has one exit code, HTTP status and errno,
// whichever way the error was wrapped; the message is the error's own, the
// kind never shows in it. The numbers are part of opm's interface (README
// "Exit codes", docs/http.md): changing one must change this test.
func TestKinds(t *testing.T) {
	for _, c := range []struct {
		kind  error
		exit  int
		http  int
		errno syscall.Errno
	}{
		{ErrUsage, 2, 400, syscall.EINVAL},
		{ErrInvalid, 2, 400, syscall.ENOENT},
		{ErrNotFound, 3, 404, syscall.ENOENT},
		{ErrConflict, 4, 409, syscall.EIO},
		{ErrIntegrity, 5, 500, syscall.EIO},
		{ErrDigestInvalid, 5, 400, syscall.EIO},
		{ErrExists, 6, 409, syscall.EEXIST},
		{ErrLocked, 7, 503, syscall.EAGAIN},
		{ErrBusy, 7, 503, syscall.EBUSY},
		{ErrProblems, 8, 500, syscall.EIO},
		{ErrPermission, 9, 403, syscall.EACCES},
		{ErrUntrusted, 10, 403, syscall.EACCES},
		{ErrStale, 11, 503, syscall.ESTALE},
		{ErrTooLarge, 2, 413, syscall.EFBIG},
		{ErrTooMany, 1, 429, syscall.EAGAIN},
		{ErrTooSlow, 1, 408, syscall.ETIMEDOUT},
		{context.Canceled, 1, 499, syscall.EINTR},
		{errors.New("anything else"), 1, 500, syscall.EIO},
	} {
		for _, err := range []error{
			Errorf(c.kind, "what happened"),
			fmt.Errorf("context: %w", Errorf(c.kind, "what happened")),
			WithKind(c.kind, errors.New("what happened")),
			errors.Join(errors.New("other"), Errorf(c.kind, "what happened")),
		} {
			if c.kind.Error() == "anything else" {
				err = fmt.Errorf("context: %w", c.kind)
			}
			k := KindOf(err)
			if k.Exit != c.exit || k.HTTP != c.http || k.Errno != c.errno {
				t.Errorf("%v (%q): exit %d, HTTP %d, errno %v; want %d, %d, %v", c.kind, err, k.Exit, k.HTTP, k.Errno, c.exit, c.http, c.errno)
			}
		}
		if msg := Errorf(c.kind, "what happened").Error(); msg != "what happened" {
			t.Errorf("%v: message %q carries more than what happened", c.kind, msg)
		}
	}
	// The more specific kinds win over the ones they also are.
	if k := KindOf(WithKind(ErrDigestInvalid, Errorf(ErrIntegrity, "x"))); k.Err != ErrDigestInvalid {
		t.Errorf("digest-invalid integrity error is %s", k.Name)
	}
	if k := KindOf(errors.Join(Errorf(ErrNotFound, "a"), Errorf(ErrIntegrity, "b"))); k.Err != ErrIntegrity {
		t.Errorf("not found and integrity together is %s, want integrity", k.Name)
	}
	if k := KindOf(WithKind(ErrPermission, fs.ErrPermission)); k.Exit == KindOf(ErrUsage).Exit {
		t.Error("a permission error exits as a usage error")
	}
	if KindOf(nil).Exit != 0 || WithKind(ErrInvalid, nil) != nil {
		t.Error("no error has a kind")
	}
	names := map[string]bool{}
	for _, k := range Kinds {
		if names[k.Name] {
			t.Errorf("kind name %q twice", k.Name)
		}
		names[k.Name] = true
	}
}

// TestOneLineSaysItOnce: a cause two layers both name is said once; the
// lines of a joined error become one.
func TestOneLineSaysItOnce(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("blob x: %w", fmt.Errorf("not found: %w", ErrNotFound)), "blob x: not found"},
		{fmt.Errorf("a: %w", errors.Join(errors.New("b"), errors.New("c"))), "a: b; c"},
		{errors.New("a: b: a: b"), "a: b: a: b"},
	} {
		if got := OneLine(c.err); got != c.want {
			t.Errorf("OneLine(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}
