package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run feeds the events to a summariser as `go test -json` would print them
// and returns what it printed as it went, its summary, and the JSON.
func run(t *testing.T, dir string, events []event) (live, summary, js string) {
	var in, jsb, out, sum bytes.Buffer
	for _, e := range events {
		b, _ := json.Marshal(e)
		in.Write(append(b, '\n'))
	}
	in.WriteString("a line that is not JSON\n")
	s := newSummariser(&out, &bytes.Buffer{}, dir, "t", 12, 8)
	s.read(&in, &jsb)
	s.summary(&sum, "t.log", 1)
	return out.String(), sum.String(), jsb.String()
}

func out(pkg, test string, lines ...string) (es []event) {
	for _, l := range lines {
		es = append(es, event{Action: "output", Package: pkg, Test: test, Output: l + "\n"})
	}
	return es
}

func TestSummary(t *testing.T) {
	var es []event
	add := func(e ...event) { es = append(es, e...) }
	add(event{Action: "start", Package: "p/a"}, event{Action: "run", Package: "p/a", Test: "TestFail"})
	add(out("p/a", "TestFail", "=== RUN   TestFail")...)
	for i := range 50 {
		add(out("p/a", "TestFail", fmt.Sprintf("noise %d", i))...)
	}
	add(out("p/a", "TestFail", "    a_test.go:14: wanted 1, got 2")...)
	for i := range 30 {
		add(out("p/a", "TestFail", fmt.Sprintf("more noise %d", i))...)
	}
	add(out("p/a", "TestFail", "    a_test.go:15: giving up", "--- FAIL: TestFail (0.00s)")...)
	add(event{Action: "fail", Package: "p/a", Test: "TestFail"})
	add(event{Action: "run", Package: "p/a", Test: "TestSub"}, event{Action: "run", Package: "p/a", Test: "TestSub/b"})
	add(out("p/a", "TestSub/b", "    a_test.go:20: b broke", "--- FAIL: TestSub/b (0.00s)")...)
	add(event{Action: "fail", Package: "p/a", Test: "TestSub/b"})
	add(out("p/a", "TestSub", "--- FAIL: TestSub (0.00s)")...)
	add(event{Action: "fail", Package: "p/a", Test: "TestSub"})
	add(out("p/a", "", "FAIL\tp/a\t0.1s")...)
	add(event{Action: "fail", Package: "p/a"})

	add(event{Action: "start", Package: "p/h"}, event{Action: "run", Package: "p/h", Test: "TestHang"})
	add(out("p/h", "TestHang", "=== RUN   TestHang", "panic: test timed out after 5s", "\trunning tests:", "\t\tTestHang (5s)", "")...)
	for i := range 40 {
		add(out("p/h", "TestHang", fmt.Sprintf("goroutine %d [select]:", i), "\tstack.go:1 +0x1")...)
	}
	add(out("p/h", "", "FAIL\tp/h\t5.0s")...)
	add(event{Action: "fail", Package: "p/h"})
	add(event{Action: "start", Package: "p/ok"}, event{Action: "run", Package: "p/ok", Test: "TestOK"})
	add(out("p/ok", "TestOK", "=== RUN   TestOK", "    ok_test.go:1: quiet", "--- PASS: TestOK (0.00s)")...)
	add(event{Action: "pass", Package: "p/ok", Test: "TestOK"})
	add(out("p/ok", "", "ok  \tp/ok\t0.1s")...)
	add(event{Action: "pass", Package: "p/ok"})

	dir := t.TempDir()
	live, sum, js := run(t, dir, es)
	for _, want := range []string{"FAIL\tp/a\t0.1s", "ok  \tp/ok", "a line that is not JSON", "panic: test timed out", "\t\tTestHang (5s)"} {
		if !strings.Contains(live, want) {
			t.Errorf("the live output lacks %q:\n%s", want, live)
		}
	}
	for _, bad := range []string{"quiet", "goroutine 3 ", "=== RUN"} {
		if strings.Contains(live, bad) {
			t.Errorf("the live output has %q:\n%s", bad, live)
		}
	}
	dump := filepath.Join(dir, "t.p_h.dump")
	for _, want := range []string{"--- FAIL: p/a.TestFail\n", "wanted 1, got 2", "giving up", "b broke", dump,
		"--- FAIL: p/h.TestHang (timed out)\n", "\t\tTestHang (5s)\n", "goroutine 0 [select]"} {
		if !strings.Contains(sum, want) {
			t.Errorf("the summary lacks %q:\n%s", want, sum)
		}
	}
	if strings.Contains(sum, "p/a.TestSub\n") || strings.Contains(sum, "goroutine 5 ") || strings.Contains(sum, "\nnoise 20\n") {
		t.Errorf("the summary has too much:\n%s", sum)
	}
	lines := strings.Split(strings.TrimSuffix(sum, "\n"), "\n")
	if last := lines[len(lines)-1]; last != "======== FAIL (testsum t): p/a.TestFail, p/a.TestSub/b, p/h.TestHang (timed out)" {
		t.Errorf("last line %q", last)
	}
	if b, err := os.ReadFile(dump); err != nil || !strings.HasPrefix(string(b), "panic: test timed out") || !strings.Contains(string(b), "goroutine 39 [select]") {
		t.Errorf("dump: %v\n%s", err, b)
	}

	// Two rounds, tallied.
	for _, n := range []string{"r1.json", "r2.json"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stdout := os.Stdout
	r, w, _ := os.Pipe()
	os.Stdout = w
	status := tally([]string{filepath.Join(dir, "r1.json"), filepath.Join(dir, "r2.json")})
	w.Close()
	os.Stdout = stdout
	var got bytes.Buffer
	got.ReadFrom(r)
	if status != 1 || !strings.Contains(got.String(), "2 of 2 runs failed it (2 times in all): p/h.TestHang (timed out)") {
		t.Errorf("tally: status %d\n%s", status, got.String())
	}
}
