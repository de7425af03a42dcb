package opm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Sentinel errors: the kinds of failure. Give an error its kind with Errorf
// (opm.Errorf(opm.ErrNotFound, "%s: no such tag", ref)) or WithKind, and test
// it with errors.Is. The kind never shows in the message: a message is
// built to be read, and each kind is turned into an exit code, an HTTP
// status and an errno by the one table below (Kinds).
var (
	// ErrInvalid: the input (a name, a tag, a path, a manifest) breaks a rule.
	ErrInvalid = errors.New("invalid")
	// ErrUsage: the command line is wrong (a flag, the number of arguments).
	ErrUsage = errors.New("usage")
	// ErrNotFound: the tag, digest, blob or path does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a concurrent change to the same thing; nothing was written.
	ErrConflict = errors.New("conflict")
	// ErrIntegrity: stored bytes (the registry's own, or a remote's) do not
	// match their digest or size.
	ErrIntegrity = errors.New("integrity failure")
	// ErrDigestInvalid: bytes a client sent do not match the digest it
	// named; nothing was stored.
	ErrDigestInvalid = errors.New("digest does not match")
	// ErrExists: the target exists and overwriting was not asked for.
	ErrExists = errors.New("already exists")
	// ErrLocked: another process holds the home or a lock of it.
	ErrLocked = errors.New("locked by another process")
	// ErrBusy: a mount is in use (opm umount while files are open there).
	ErrBusy = errors.New("busy")
	// ErrPermission: the operating system refused access to a file, or a
	// bucket refused the credentials.
	ErrPermission = errors.New("permission denied")
	// ErrUntrusted: a remote's history does not verify against the key
	// this home trusts (an unsigned or forged commit, a key not allowed,
	// a rollback or a fork), or a commit would not.
	ErrUntrusted = errors.New("untrusted")
	// ErrStale: a remote's metadata is older than its publisher promised
	// (its signed timestamp expired): a frozen or unreachable origin.
	ErrStale = errors.New("stale")
	// ErrTooLarge: a request or input is over a documented limit.
	ErrTooLarge = errors.New("too large")
	// ErrTooMany: too many of something at once (upload sessions); try
	// again later.
	ErrTooMany = errors.New("too many at once")
	// ErrTooSlow: a client sent its request body slower than the minimum
	// rate.
	ErrTooSlow = errors.New("too slow")
	// ErrProblems: a check ran and found problems (opm fsck).
	ErrProblems = errors.New("problems found")
)

// Kind is one row of the error table: what a kind of failure becomes at
// each of opm's interfaces.
type Kind struct {
	Err   error  // the sentinel; nil for the last row, every other error
	Name  string // stable name for JSON output and docs
	Exit  int    // exit code of the CLI
	HTTP  int    // HTTP status of the server
	Errno syscall.Errno
}

// Kinds is the error table, the one place each kind of failure is mapped to
// an exit code, an HTTP status and an errno. The first row an error matches
// (errors.Is) is its kind, so the more specific kinds come first; the last
// row is every other error. README.md ("Exit codes") and docs/http.md show
// the same table.
var Kinds = []Kind{
	{ErrUsage, "usage", 2, 400, syscall.EINVAL},
	{ErrDigestInvalid, "digest-invalid", 5, 400, syscall.EIO},
	{ErrIntegrity, "integrity", 5, 500, syscall.EIO},
	{ErrInvalid, "invalid", 2, 400, syscall.ENOENT}, // in the mount: a name that cannot exist does not
	{ErrTooLarge, "too-large", 2, 413, syscall.EFBIG},
	{ErrTooMany, "too-many", 1, 429, syscall.EAGAIN},
	{ErrTooSlow, "too-slow", 1, 408, syscall.ETIMEDOUT},
	{ErrNotFound, "not-found", 3, 404, syscall.ENOENT},
	{ErrConflict, "conflict", 4, 409, syscall.EIO},
	{ErrExists, "exists", 6, 409, syscall.EEXIST},
	{ErrLocked, "locked", 7, 503, syscall.EAGAIN},
	{ErrBusy, "busy", 7, 503, syscall.EBUSY},
	{ErrProblems, "problems", 8, 500, syscall.EIO},
	{ErrPermission, "permission", 9, 403, syscall.EACCES},
	{ErrUntrusted, "untrusted", 10, 403, syscall.EACCES},
	{ErrStale, "stale", 11, 503, syscall.ESTALE},
	{context.Canceled, "canceled", 1, 499, syscall.EINTR},
	{context.DeadlineExceeded, "timeout", 1, 504, syscall.ETIMEDOUT},
	{nil, "error", 1, 500, syscall.EIO},
}

// KindOf returns the row of the error table that err belongs to. A nil
// error has none: its Kind is the zero value.
func KindOf(err error) Kind {
	if err == nil {
		return Kind{}
	}
	for _, k := range Kinds[:len(Kinds)-1] {
		if errors.Is(err, k.Err) {
			return k
		}
	}
	return Kinds[len(Kinds)-1]
}

// kinded is an error with a kind that does not show in its message.
type kinded struct {
	err  error
	kind error
}

func (e *kinded) Error() string   { return e.err.Error() }
func (e *kinded) Unwrap() []error { return []error{e.err, e.kind} }

// Errorf formats an error of the given kind (one of the sentinels above).
// Its message is the formatted text alone; %w wraps a cause as with
// fmt.Errorf.
func Errorf(kind error, format string, args ...any) error {
	return &kinded{err: fmt.Errorf(format, args...), kind: kind}
}

// WithKind gives err the kind, leaving its message as it is. A nil err
// stays nil.
func WithKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kinded{err: err, kind: kind}
}

// OneLine renders an error as the single line opm prints and reports: the
// lines of a multi-line message (errors.Join) joined by "; ", and any
// other control character in it escaped (Printable): a message may carry
// text from an origin. A part of the chain that repeats the part before it
// ("…: not found: not found", a cause wrapped by two layers that both say
// it) is said once.
func OneLine(err error) string {
	parts := strings.Split(strings.ReplaceAll(err.Error(), "\n", "; "), ": ")
	out := parts[:1]
	for _, p := range parts[1:] {
		if p != out[len(out)-1] {
			out = append(out, p)
		}
	}
	return Printable(strings.Join(out, ": "))
}
