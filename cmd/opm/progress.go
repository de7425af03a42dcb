package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/openpm/opm/registry"
)

// progress draws one status line on a terminal: files, bytes, rate. It
// is silent when stderr is not a terminal or --json was asked for.
type progress struct {
	w     io.Writer
	verb  string
	mu    sync.Mutex
	files int
	total int64
	done  int64
	count int
	start time.Time
	last  time.Time
}

func newProgress(c *cli.Context, verb string) registry.Progress {
	if c.Bool("json") || !isTerminal(os.Stderr) {
		return nil
	}
	return &progress{w: os.Stderr, verb: verb}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progress) Start(files int, bytes int64) {
	p.files, p.total, p.start = files, bytes, time.Now()
}

func (p *progress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.count++
	if time.Since(p.last) >= 100*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
}

func (p *progress) draw() {
	secs := time.Since(p.start).Seconds()
	rate := ""
	if secs > 0 {
		rate = humanBytes(int64(float64(p.done)/secs)) + "/s"
	}
	fmt.Fprintf(p.w, "\r\033[K%s: %d/%d files, %s/%s %s", p.verb, p.count, p.files, humanBytes(p.done), humanBytes(p.total), rate)
}

func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
