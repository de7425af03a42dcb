// Package opm is the domain model of the opm registry: names and references,
// the package (manifest) format, and the errors every other package returns.
// It does no I/O and imports none of opm's other packages.
package opm

import "errors"

// Sentinel errors. Wrap them with context first
// (fmt.Errorf("%s: %w", ref, opm.ErrNotFound)) and test with errors.Is.
// Each maps to one exit code of the CLI (see cmd/opm/exit.go).
var (
	// ErrInvalid: the input (a name, a tag, a path, a manifest) breaks a rule.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: the tag, digest, blob or path does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a concurrent change to the same thing; nothing was written.
	ErrConflict = errors.New("conflict")
	// ErrIntegrity: bytes do not match their digest or size.
	ErrIntegrity = errors.New("integrity failure")
	// ErrExists: the target exists and overwriting was not asked for.
	ErrExists = errors.New("already exists")
	// ErrLocked: another process holds the home.
	ErrLocked = errors.New("locked by another process")
)
