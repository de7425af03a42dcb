// Command testsum runs `go test -json` and prints what a person needs from
// a CI log. As the run goes: each package's ok/FAIL line and the output of
// each failed test, as plain `go test` prints them. At the end: every failed
// test with its messages (trimmed to -lines lines), and a last line naming
// them, so the tail of the log says why the run failed. When a test binary
// panics (the -timeout panic, with the stack of every goroutine, or any
// other), everything from the panic on is kept in a file; the summary shows
// the file's name and its first -head lines, which name the hung test.
//
//	testsum [-name N] [-dir D] [-lines N] [-head N] -- go test -json ARGS...
//	go test -json ARGS... | testsum [flags]
//	testsum -tally D/N1.json D/N2.json...
//
// The first form exits with the command's status (1 if it passed but a test
// failed), the second with 1 if a test failed. The whole output is kept in
// D/N.log and the JSON in D/N.json. -tally reads such JSON files (the rounds
// of make stress) and prints how many times each test failed and in how many
// of the files; it exits 1 if any did. Standard library only.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// event is one line of `go test -json` (cmd/test2json, and the build
// events of cmd/go).
type event struct {
	Action, Package, Test, Output, ImportPath, FailedBuild string
}

// record is the output of one test, or of a package outside its tests
// (name "").
type record struct {
	name    string
	lines   []string
	panicAt int // index in lines of the panic that killed the binary, or -1
	done    bool
}

type pkg struct {
	name     string
	tests    map[string]*record
	order    []*record // in the order they started
	self     *record   // output outside tests
	failed   int       // tests failed
	panicked bool      // from a panic on, everything is also in the dump
	dump     *os.File  // nil if it could not be written
	dumpPath string
	dumpHead []string
	dumpN    int
	quiet    bool            // the panic's first lines were echoed; the stacks are not
	running  bool            // reading the "running tests:" list of a timeout
	timedOut map[string]bool // the tests that list names
}

type failure struct {
	pkg, test, note string
	lines           []string
}

type summariser struct {
	out          io.Writer // the pass-through output
	log          io.Writer // every line, for D/N.log
	dir, name    string    // where dumps go ("": nowhere)
	lines, head  int
	pkgs         map[string]*pkg
	build        map[string][]string // build output by ImportPath
	failures     []failure
	dumped       []*pkg
	passed, seen int
}

var (
	panicRe   = regexp.MustCompile(`^(panic: |fatal error: |SIGQUIT: quit|SIGABRT: abort|\*\*\* Test killed)`)
	framingRe = regexp.MustCompile(`^=== (RUN|PAUSE|CONT|NAME) `)
	messageRe = regexp.MustCompile(`^\s+[\w.\-/]+\.go:\d+: `) // t.Log, t.Error, t.Fatal
	// Lines trim keeps first: the test's messages, and the heads of race
	// reports and panics.
	keyRe     = regexp.MustCompile(`^(\s+[\w.\-/]+\.go:\d+: |WARNING: DATA RACE|(Previous )?(Write|Read) at |panic: )`)
	runningRe = regexp.MustCompile(`^\t\t(\S+) \([^)]*\)\n$`) // a test named by the -timeout panic
)

func newSummariser(out, log io.Writer, dir, name string, lines, head int) *summariser {
	return &summariser{out: out, log: log, dir: dir, name: name, lines: lines, head: head,
		pkgs: map[string]*pkg{}, build: map[string][]string{}}
}

// read feeds every line of r to the summariser and tees the JSON to js.
func (s *summariser) read(r io.Reader, js io.Writer) {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var e event
			if line[0] == '{' && json.Unmarshal(line, &e) == nil && e.Action != "" {
				js.Write(line)
				s.handle(e)
			} else { // not JSON: a line of go itself, passed through
				s.out.Write(line)
				s.log.Write(line)
			}
		}
		if err != nil {
			break
		}
	}
	for _, p := range s.pkgs { // packages the run never finished
		s.finish(p, true, "", "no result: the run stopped")
	}
}

func (s *summariser) pkg(name string) *pkg {
	p := s.pkgs[name]
	if p == nil {
		p = &pkg{name: name, tests: map[string]*record{}, self: &record{panicAt: -1}}
		s.pkgs[name] = p
	}
	return p
}

func (p *pkg) test(name string) *record {
	if name == "" {
		return p.self
	}
	t := p.tests[name]
	if t == nil {
		t = &record{name: name, panicAt: -1}
		p.tests[name] = t
		p.order = append(p.order, t)
	}
	return t
}

func (s *summariser) handle(e event) {
	if e.Action == "build-output" {
		s.build[e.ImportPath] = append(s.build[e.ImportPath], e.Output)
		fmt.Fprint(s.out, e.Output)
		fmt.Fprint(s.log, e.Output)
		return
	}
	if e.Package == "" {
		return
	}
	p := s.pkg(e.Package)
	switch e.Action {
	case "run":
		p.test(e.Test)
	case "output":
		s.output(p, p.test(e.Test), e.Output)
	case "pass", "skip":
		if e.Test == "" {
			s.passed++
			s.finish(p, false, "", "")
		} else {
			p.test(e.Test).done = true
		}
	case "fail":
		if e.Test == "" {
			s.finish(p, true, e.FailedBuild, "")
			return
		}
		t := p.test(e.Test)
		t.done = true
		p.failed++
		s.fail(p, t, "")
	}
}

func (s *summariser) output(p *pkg, t *record, line string) {
	fmt.Fprint(s.log, line)
	if !p.panicked && panicRe.MatchString(line) {
		p.panicked = true
		if s.dir != "" {
			p.dumpPath = filepath.Join(s.dir, s.name+"."+strings.ReplaceAll(p.name, "/", "_")+".dump")
			f, err := os.Create(p.dumpPath)
			if err != nil {
				fmt.Fprintf(s.out, "testsum: %v\n", err)
				p.dumpPath = ""
			}
			p.dump = f
		}
		s.dumped = append(s.dumped, p)
	}
	if p.panicked && t.panicAt < 0 {
		t.panicAt = len(t.lines)
	}
	t.lines = append(t.lines, line)
	if p.panicked {
		if p.dump != nil {
			p.dump.WriteString(line)
		}
		if p.dumpN++; p.dumpN <= s.head {
			p.dumpHead = append(p.dumpHead, line)
		}
		if m := runningRe.FindStringSubmatch(line); p.running && m != nil {
			if p.timedOut == nil {
				p.timedOut = map[string]bool{}
			}
			p.timedOut[m[1]] = true
		} else {
			p.running = line == "\trunning tests:\n" && p.dumpN < 10
		}
		if !p.quiet && (strings.HasPrefix(line, "goroutine ") || p.dumpN > 20) {
			p.quiet = true
			fmt.Fprintf(s.out, "\t... (the rest, with every goroutine's stack: %s)\n", orLog(p.dumpPath))
		}
		if p.quiet && !(t == p.self && (strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "ok "))) {
			return
		}
		fmt.Fprint(s.out, line)
		return
	}
	if t == p.self && line != "PASS\n" {
		fmt.Fprint(s.out, line)
	}
}

func orLog(path string) string {
	if path == "" {
		return "the full log"
	}
	return path
}

// fail records a failed test and prints its output, as go test does.
func (s *summariser) fail(p *pkg, t *record, note string) {
	lines := s.show(p, t)
	s.failures = append(s.failures, failure{p.name, t.name, note, lines})
	if note != "" {
		fmt.Fprintf(s.out, "--- FAIL: %s (%s)\n", t.name, note)
	}
	for _, l := range trim(lines, 200) {
		fmt.Fprint(s.out, l)
	}
}

// show is what to print of a test's output: without the === lines, and
// cut at a panic (whose stacks are in the dump) but keeping the test's own
// messages after it.
func (s *summariser) show(p *pkg, t *record) []string {
	var out []string
	for i, l := range t.lines {
		switch {
		case framingRe.MatchString(l):
		case t.panicAt >= 0 && i == t.panicAt:
			out = append(out, l, fmt.Sprintf("\t... (the test binary died; its stacks: %s)\n", orLog(p.dumpPath)))
		case t.panicAt >= 0 && i > t.panicAt && !messageRe.MatchString(l):
		default:
			out = append(out, l)
		}
	}
	return out
}

// finish ends a package: tests that never ended failed with it.
func (s *summariser) finish(p *pkg, failed bool, build, note string) {
	delete(s.pkgs, p.name)
	s.seen++
	if p.dump != nil {
		p.dump.Close()
	}
	p.dump = nil
	if !failed {
		if p.dumpPath != "" { // a line that looked like a panic, in a package that passed
			os.Remove(p.dumpPath)
		}
		for i, d := range s.dumped {
			if d == p {
				s.dumped = append(s.dumped[:i], s.dumped[i+1:]...)
				break
			}
		}
		return
	}
	if note == "" {
		note = "did not finish"
	}
	before := len(s.failures)
	for _, t := range p.order {
		switch {
		case t.done:
		case p.timedOut[t.name]:
			s.fail(p, t, "timed out")
		default:
			s.fail(p, t, note)
		}
	}
	if build != "" {
		s.failures = append(s.failures, failure{p.name, "", "build failed", s.build[build]})
	} else if p.failed == 0 && len(s.failures) == before {
		if note == "did not finish" {
			note = "failed outside its tests"
		}
		s.failures = append(s.failures, failure{p.name, "", note, s.show(p, p.self)})
	}
}

// trim keeps at most max lines (and a line for each gap): the first eighth
// (5 of 40), the last three eighths and, between them, the test's own
// messages (t.Error, t.Fatal, t.Log) and the heads of race reports and
// panics, the last ones first.
func trim(lines []string, max int) []string {
	if len(lines) <= max {
		return lines
	}
	first, last := max/8, max*3/8
	keep := map[int]bool{}
	for i := range first {
		keep[i] = true
	}
	for i := len(lines) - last; i < len(lines); i++ {
		keep[i] = true
	}
	room := max - first - last
	for i := len(lines) - last - 1; i >= first && room > 0; i-- {
		if keyRe.MatchString(lines[i]) {
			keep[i] = true
			room--
		}
	}
	var out []string
	skipped := 0
	for i, l := range lines {
		if !keep[i] {
			skipped++
			continue
		}
		if skipped > 0 {
			out = append(out, fmt.Sprintf("\t... (%d lines)\n", skipped))
			skipped = 0
		}
		out = append(out, l)
	}
	return out
}

// leaves are the failures to name: a test that failed only because a
// subtest did is left out, and each test once; times counts its failures
// (two a run with -cpu 1,2).
func leaves(fs []failure) (out []failure, times map[string]int) {
	times = map[string]int{}
	for _, f := range fs {
		times[f.title()]++
	}
	listed := map[string]bool{}
	for _, f := range fs {
		sub, own := false, false
		for _, g := range fs {
			sub = sub || (f.test != "" && g.pkg == f.pkg && strings.HasPrefix(g.test, f.test+"/"))
		}
		for _, l := range f.lines {
			own = own || !strings.HasPrefix(strings.TrimSpace(l), "--- FAIL: ")
		}
		if (sub && !own) || listed[f.title()] {
			continue
		}
		listed[f.title()] = true
		out = append(out, f)
	}
	return out, times
}

func (f failure) title() string {
	if f.test == "" {
		return f.pkg
	}
	return f.pkg + "." + f.test
}

// summary prints the failures; status is the command's exit status.
func (s *summariser) summary(w io.Writer, logPath string, status int) {
	fs, times := leaves(s.failures)
	if len(fs) == 0 && len(s.dumped) == 0 {
		if status != 0 {
			fmt.Fprintf(w, "======== FAIL (testsum %s): exit status %d, but no test failed: see go's messages above (log %s)\n", s.name, status, logPath)
			return
		}
		fmt.Fprintf(w, "testsum %s: no test failed (%d packages, %d passed or without tests; log %s)\n", s.name, s.seen, s.passed, logPath)
		return
	}
	fmt.Fprintf(w, "\n======== testsum %s: %d failed (whole output: %s) ========\n", s.name, len(fs), logPath)
	var names []string
	for _, f := range fs {
		name := f.title()
		if f.note != "" {
			name += " (" + f.note + ")"
		}
		if n := times[f.title()]; n > 1 {
			name += fmt.Sprintf(" (%d times)", n)
		}
		names = append(names, name)
		fmt.Fprintf(w, "--- FAIL: %s\n", name)
		for _, l := range trim(f.lines, s.lines) {
			fmt.Fprint(w, l)
		}
	}
	for _, p := range s.dumped {
		where := "the dump could not be written; see " + logPath
		if p.dumpPath != "" {
			where = "whole in " + p.dumpPath
		}
		fmt.Fprintf(w, "======== %s: the test binary panicked; its output from the panic on (%d lines) is %s; the first %d:\n",
			p.name, p.dumpN, where, len(p.dumpHead))
		for _, l := range p.dumpHead {
			fmt.Fprint(w, l)
		}
		if p.dumpN > len(p.dumpHead) {
			fmt.Fprintf(w, "\t... (%d more lines in %s)\n", p.dumpN-len(p.dumpHead), orLog(p.dumpPath))
		}
	}
	if len(names) > 10 {
		names = append(names[:10], fmt.Sprintf("and %d more", len(names)-10))
	}
	fmt.Fprintf(w, "======== FAIL (testsum %s): %s\n", s.name, strings.Join(names, ", "))
}

// tally prints how often each test failed across the JSON files.
func tally(files []string) int {
	count, runs := map[string]int{}, map[string]int{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsum:", err)
			count[name+" (missing)"]++
			runs[name+" (missing)"]++
			continue
		}
		s := newSummariser(io.Discard, io.Discard, "", "", 0, 0)
		s.read(f, io.Discard)
		f.Close()
		fs, times := leaves(s.failures)
		for _, x := range fs {
			k := x.title()
			if x.note != "" {
				k += " (" + x.note + ")"
			}
			count[k] += times[x.title()]
			runs[k]++
		}
	}
	var names []string
	for k := range count {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i], names[j]
		if runs[a] != runs[b] {
			return runs[a] > runs[b]
		}
		return a < b
	})
	fmt.Printf("======== testsum: failures per test over %d runs\n", len(files))
	for _, k := range names {
		fmt.Printf("%3d of %d runs failed it (%d times in all): %s\n", runs[k], len(files), count[k], k)
	}
	if len(names) == 0 {
		fmt.Println("no test failed")
		return 0
	}
	return 1
}

func main() {
	name := flag.String("name", "go-test", "name of the run, in the summary and the files' names")
	dir := flag.String("dir", os.TempDir(), "where to keep the log, the JSON and the dumps of panics")
	lines := flag.Int("lines", 40, "lines of output to show per failed test")
	head := flag.Int("head", 60, "lines of a panic's dump to show")
	doTally := flag.Bool("tally", false, "count the failures in the JSON files named")
	flag.Parse()
	if *doTally {
		os.Exit(tally(flag.Args()))
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	base := filepath.Join(*dir, *name)
	old, _ := filepath.Glob(base + ".*.dump")
	for _, f := range old {
		os.Remove(f)
	}
	logf, err1 := os.Create(base + ".log")
	jsf, err2 := os.Create(base + ".json")
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	lw, jw := bufio.NewWriter(logf), bufio.NewWriter(jsf)
	s := newSummariser(os.Stdout, lw, *dir, *name, *lines, *head)

	status := 0
	var interrupted os.Signal
	if args := flag.Args(); len(args) == 0 {
		s.read(os.Stdin, jw)
	} else {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsum:", err)
			os.Exit(2)
		}
		// An interrupt reaches go test too (or is passed on): read on to
		// the end, summarise what ran, then die of it (so that a shell
		// running testsum stops too).
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		got := make(chan os.Signal, 1)
		go func() {
			for sig := range sigs {
				select {
				case got <- sig:
				default:
				}
				cmd.Process.Signal(sig)
			}
		}()
		s.read(stdout, jw)
		if err := cmd.Wait(); err != nil {
			status = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				status = ee.ExitCode()
			}
			fmt.Printf("testsum %s: %s: %v\n", *name, strings.Join(args, " "), err)
		}
		select {
		case interrupted = <-got:
		default:
		}
	}
	lw.Flush()
	jw.Flush()
	logf.Close()
	jsf.Close()
	var sum bytes.Buffer
	s.summary(&sum, logf.Name(), status)
	os.Stdout.Write(sum.Bytes())
	if status == 0 && (len(s.failures) > 0 || len(s.dumped) > 0) {
		status = 1
	}
	if interrupted != nil {
		signal.Reset(interrupted)
		syscall.Kill(os.Getpid(), interrupted.(syscall.Signal))
		time.Sleep(time.Second) // while it arrives
	}
	os.Exit(status)
}
