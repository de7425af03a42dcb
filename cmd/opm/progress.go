package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/openpm/opm/daemon"
	"github.com/openpm/opm/registry"
)

// The one progress renderer: a bar of bytes with rate and ETA
// (schollz/progressbar) on the terminal of the command that asked — the
// client's, when the daemon carries the command out (it sends progress
// events over its socket; see daemon.Progress). Nothing is drawn when that
// stderr is not a terminal or --json was asked for.

// newProgress returns the progress of a long command, or nil when none is
// to be drawn (json: the command prints JSON).
func newProgress(g globalOptions, json bool, verb string) registry.Progress {
	if json {
		return nil
	}
	if run := runningInDaemon(g.ctx); run != nil {
		if run.progress == nil {
			return nil
		}
		return &remoteProgress{verb: verb, send: run.progress}
	}
	if !isTerminal(os.Stderr) {
		return nil
	}
	return &bar{w: os.Stderr, verb: verb}
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// bar draws progress on a terminal.
type bar struct {
	w    io.Writer
	verb string
	mu   sync.Mutex
	b    *progressbar.ProgressBar
}

func (p *bar) Start(files int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.b = progressbar.NewOptions64(bytes,
		progressbar.OptionSetDescription(fmt.Sprintf("%s %d files", p.verb, files)),
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *bar) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b != nil {
		p.b.Add64(n)
	}
}

func (p *bar) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b != nil {
		p.b.Finish()
		p.b = nil
	}
}

// remoteProgress sends a command's progress, run by the daemon, to the
// client that draws it: the bytes added are summed and sent at most every
// 100 ms.
type remoteProgress struct {
	verb    string
	send    func(daemon.Progress)
	mu      sync.Mutex
	pending int64
	last    time.Time
}

func (p *remoteProgress) Start(files int, bytes int64) {
	p.send(daemon.Progress{Op: "start", Verb: p.verb, Files: files, Bytes: bytes})
}

func (p *remoteProgress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending += n
	if time.Since(p.last) >= 100*time.Millisecond {
		p.send(daemon.Progress{Op: "add", Bytes: p.pending})
		p.pending, p.last = 0, time.Now()
	}
}

func (p *remoteProgress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending > 0 {
		p.send(daemon.Progress{Op: "add", Bytes: p.pending})
		p.pending = 0
	}
	p.send(daemon.Progress{Op: "done"})
}

// drawRemote is the client's side: it draws the daemon's progress events
// on w with the one renderer.
func drawRemote(w io.Writer) func(daemon.Progress) {
	var b *bar
	return func(ev daemon.Progress) {
		switch ev.Op {
		case "start":
			b = &bar{w: w, verb: ev.Verb}
			b.Start(ev.Files, ev.Bytes)
		case "add":
			if b != nil {
				b.Add(ev.Bytes)
			}
		case "done":
			if b != nil {
				b.Done()
			}
		}
	}
}
