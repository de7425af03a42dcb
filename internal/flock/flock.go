// Package flock takes advisory file locks (flock(2)) that wait politely:
// a lock held by a process that dies is released by the kernel, so no lock
// outlives its holder. It is the one way opm takes a file lock: the gc
// lock, the fetch lock, the daemon's lock of a home, upload directories'
// owner locks and the probe of Badger's directory lock.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Shared and Exclusive are the two ways to hold a lock.
const (
	Shared    = syscall.LOCK_SH
	Exclusive = syscall.LOCK_EX
)

// File is an open file whose lock may be taken; closing it releases the
// lock. The file's content is its holder's (the daemon records itself in
// its lock file).
type File struct{ *os.File }

// Open opens the file (or directory) at path to lock it, without locking
// it; create makes a missing file.
func Open(path string, create bool) (*File, error) {
	var f *os.File
	var err error
	if create {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	} else {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, err
	}
	return &File{f}, nil
}

// TryLock takes the lock if no other holder has it in a conflicting way,
// without waiting; false when another has it.
func (f *File) TryLock(how int) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case !errors.Is(err, syscall.EINTR):
			return false, err
		}
	}
}

// Wait takes the lock, waiting while another holder has it in a
// conflicting way, until ctx ends: then it tries once more and returns
// ctx's error if the lock is still taken.
func (f *File) Wait(ctx context.Context, how int) error {
	wait := time.Millisecond
	for {
		ok, err := f.TryLock(how)
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			if ok, err := f.TryLock(how); ok || err != nil {
				return err
			}
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Lock takes the lock of the file at path (created if missing), waiting
// while another process holds it in a conflicting way, until ctx ends.
// release gives it back. what names the lock in errors.
func Lock(ctx context.Context, path, what string, how int) (release func(), err error) {
	f, err := Open(path, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := f.Wait(ctx, how); err != nil {
		f.Close()
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return func() { f.Close() }, nil
}

// Try takes the lock of the file at path (created if missing) if no other
// process holds it in a conflicting way, without waiting. ok is false when
// another holds it.
func Try(path string, how int) (release func(), ok bool, err error) {
	f, err := Open(path, true)
	if err != nil {
		return nil, false, err
	}
	if ok, err = f.TryLock(how); !ok {
		f.Close()
		return nil, false, err
	}
	return func() { f.Close() }, true, nil
}

// Held reports whether another holder has the lock of the file or
// directory at path in a way that conflicts with how (a missing file is not
// held). It takes the lock for an instant when it is free.
func Held(path string, how int) bool {
	f, err := Open(path, false)
	if err != nil {
		return false
	}
	defer f.Close()
	ok, err := f.TryLock(how)
	return !ok && err == nil
}
