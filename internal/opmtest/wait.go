package opmtest

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// WaitTimeout is how long Eventually waits: long enough that only a hang
// reaches it, on a machine loaded by other tests (make stress). A test never
// asserts how long something took; it waits for it, with this one deadline.
// OPM_TEST_WAIT (a Go duration) overrides it.
var WaitTimeout = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("OPM_TEST_WAIT")); err == nil && d > 0 {
		return d
	}
	return 2 * time.Minute
}()

// Eventually is the tests' one way to wait for something that happens in
// another goroutine or process: it calls cond until it returns nil, a few
// milliseconds apart at first and up to 100 ms apart later, and fails the
// test if it has not after WaitTimeout, naming what it waited for and what
// cond said last.
func Eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	if err := Wait(what, cond); err != nil {
		t.Fatal(err)
	}
}

// Wait is Eventually for code that reports failure itself (a benchmark
// helper, a goroutine that must not call t.Fatal): the error names what it
// waited for and what cond said last.
func Wait(what string, cond func() error) error {
	start := time.Now()
	pause := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Since(start) > WaitTimeout {
			return fmt.Errorf("waited %s for %s; still: %v", WaitTimeout, what, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// Barrier starts n parties at once: each calls Wait, and none returns before
// all n have called it. Concurrency tests start their parties with one, not
// with a sleep.
type Barrier struct {
	wg    sync.WaitGroup
	start chan struct{}
}

// NewBarrier returns a barrier for n parties.
func NewBarrier(n int) *Barrier {
	b := &Barrier{start: make(chan struct{})}
	b.wg.Add(n)
	go func() {
		b.wg.Wait()
		close(b.start)
	}()
	return b
}

// Wait marks one party ready and blocks until all are.
func (b *Barrier) Wait() {
	b.wg.Done()
	<-b.start
}
