package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Real programs reading a pushed tree: an interpreter importing a library,
// grep, tar, find, ls and a compiler. Each compares native, squashfuse and
// opm (see treeSides); the trees are warm (each side runs once untimed).

// pythonModules are the standard library modules the interpreter benchmark
// imports (those of them this python has).
var pythonModules = strings.Fields(`json email.parser email.mime.text http.client urllib.request
	xml.etree.ElementTree xml.dom.minidom asyncio unittest argparse logging.handlers decimal
	fractions statistics csv sqlite3 tarfile zipfile gzip bz2 lzma shutil tempfile subprocess
	concurrent.futures multiprocessing difflib textwrap pprint inspect dataclasses typing pathlib
	datetime calendar uuid hashlib hmac secrets ssl socket selectors html.parser configparser
	pickle copy heapq bisect string ctypes tomllib wave sched`)

// pythonTree copies this machine's python standard library (without its
// tests) into dir/py/lib/pythonX.Y with times kept, byte-compiles it, and
// returns the tree (to be PYTHONHOME), the interpreter and the modules of
// pythonModules it imports.
func pythonTree(b *testing.B, dir string) (home, python string, modules []string) {
	b.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		b.Skipf("no python3 (make bench installs it): %v", err)
	}
	out, err := exec.Command("python3", "-c", `import sys, sysconfig; print(sys.executable); print(sysconfig.get_paths()["stdlib"]); print("%d.%d" % sys.version_info[:2])`).Output()
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(out))
	python, stdlib, version := f[0], f[1], f[2]
	home = filepath.Join(dir, "py")
	lib := filepath.Join(home, "lib", "python"+version)
	os.MkdirAll(filepath.Dir(lib), 0o755)
	run(b, nil, "cp", "-a", stdlib, lib)
	for _, skip := range []string{"test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3/tests"} {
		os.RemoveAll(filepath.Join(lib, skip))
	}
	compile := pythonCmd(python, "-m", "compileall", "-q", "-j0", lib)
	compile.Env = append(os.Environ(), "PYTHONHOME="+home)
	if out, err := compile.CombinedOutput(); err != nil {
		b.Fatalf("compileall: %v\n%s", err, out)
	}
	for _, m := range pythonModules {
		if pythonCmd(python, "-c", "import "+m).Run() == nil {
			modules = append(modules, m)
		}
	}
	return home, python, modules
}

// pythonCmd runs python3 with args, as the interpreter binary at python
// (sys.executable: not a version manager's shim, whose start-up would be
// timed too).
func pythonCmd(python string, args ...string) *exec.Cmd {
	cmd := exec.Command("python3", args...)
	cmd.Path, cmd.Args[0] = python, python
	return cmd
}

// BenchmarkProgramPythonImport: the interpreter started 10 times, each
// importing ~50 standard library modules from a pushed standard library
// (PYTHONHOME at the tree, the byte-compiled caches fresh: each import reads
// a .pyc, after stats of its source). This is the case mtimes matter for:
// with every file at one time, each cache looks stale and python compiles
// every module again.
func BenchmarkProgramPythonImport(b *testing.B) {
	dir := b.TempDir()
	tree, python, modules := pythonTree(b, dir)
	b.Logf("python %s, %d modules", python, len(modules))
	sides, _ := treeSides(b, dir, "python", tree)
	code := "import " + strings.Join(modules, ", ")
	compareSides(b, sides, nil, func(root string) {
		for range 10 {
			cmd := pythonCmd(python, "-s", "-c", code)
			cmd.Env = append(os.Environ(), "PYTHONHOME="+root, "PYTHONDONTWRITEBYTECODE=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("python from %s: %v\n%s", root, err, out)
			}
		}
	})
}

// sourceTree copies two Go modules of this project's dependencies from
// the module cache (go-git and x/sys: ~2,000 files of Go source, tests and
// test data) into dir/src, times kept, and returns it.
func sourceTree(b *testing.B, dir string) string {
	b.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/go-git/go-git/v5", "golang.org/x/sys").Output()
	if err != nil {
		b.Fatalf("go list -m: %v", err)
	}
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	for i, m := range strings.Fields(string(out)) {
		run(b, nil, "cp", "-r", "--preserve=timestamps", m, filepath.Join(src, fmt.Sprint("m", i)))
	}
	run(b, nil, "chmod", "-R", "u+w", src) // the module cache is read-only
	return src
}

// BenchmarkProgramSourceTree: grep -r, tar, find and ls -lR over a source
// tree (see sourceTree), each 10 times a round.
func BenchmarkProgramSourceTree(b *testing.B) {
	dir := b.TempDir()
	sides, _ := treeSides(b, dir, "source", sourceTree(b, dir))
	for _, c := range []struct{ name, script string }{
		{"grep-r", "grep -r -c 'func ' . > /dev/null"},
		{"tar", "tar cf - . | wc -c > /dev/null"},
		{"find", "find . > /dev/null"},
		{"ls-lR", "ls -lR > /dev/null"},
	} {
		b.Run(c.name, func(b *testing.B) { compareSides(b, sides, nil, shIn(b, 10, c.script)) })
	}
}

// compileTree writes a C project of 40 headers and 30 sources, each source
// including every header, and returns it.
func compileTree(b *testing.B, dir string) string {
	b.Helper()
	src := filepath.Join(dir, "csrc")
	for _, d := range []string{"include", "src"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	var includes strings.Builder
	for h := range 40 {
		var s strings.Builder
		fmt.Fprintf(&s, "#ifndef H%d\n#define H%d\n#include <stddef.h>\n", h, h)
		for i := range 60 {
			fmt.Fprintf(&s, "struct s%d_%d { int a; long b[%d]; const char *name; };\n", h, i, i+1)
			fmt.Fprintf(&s, "static inline long f%d_%d(const struct s%d_%d *p) { return p->a + p->b[%d] + (long)sizeof(*p); }\n", h, i, h, i, i)
			fmt.Fprintf(&s, "#define M%d_%d(x) ((x) * %d + %d)\n", h, i, i, h)
		}
		s.WriteString("#endif\n")
		os.WriteFile(filepath.Join(src, "include", fmt.Sprintf("h%02d.h", h)), []byte(s.String()), 0o644)
		fmt.Fprintf(&includes, "#include \"h%02d.h\"\n", h)
	}
	for c := range 30 {
		var s strings.Builder
		s.WriteString(includes.String())
		for i := range 40 {
			fmt.Fprintf(&s, "long g%d_%d(long x) { struct s%d_%d v = {0}; v.a = (int)x; return f%d_%d(&v) + M%d_%d(x); }\n", c, i, i, i%60, i, i%60, i, i%60)
		}
		os.WriteFile(filepath.Join(src, "src", fmt.Sprintf("c%02d.c", c)), []byte(s.String()), 0o644)
	}
	return src
}

// BenchmarkProgramCompile: gcc compiles a C project (see compileTree)
// whose sources and headers it reads from the tree, writing its objects to
// a directory on disk.
func BenchmarkProgramCompile(b *testing.B) {
	if _, err := exec.LookPath("gcc"); err != nil {
		b.Skipf("no gcc: %v", err)
	}
	dir := b.TempDir()
	sides, _ := treeSides(b, dir, "compile", compileTree(b, dir))
	out := filepath.Join(dir, "objects")
	os.Mkdir(out, 0o755)
	compareSides(b, sides, nil, func(root string) {
		sh(b, out, "gcc -c -O0 -I '"+root+"/include' '"+root+"'/src/*.c")
	})
}

// BenchmarkProgramOpenClose: open(2) and close(2) of one file in a loop,
// per call pair (the cost every program pays per file it reads, before
// reading).
func BenchmarkProgramOpenClose(b *testing.B) {
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	writeRandom(b, filepath.Join(tree, "lib/file.txt"), 4096, 1)
	sides, _ := treeSides(b, dir, "openclose", tree)
	const n = 20000
	medians := compareSides(b, sides, nil, func(root string) {
		p := filepath.Join(root, "lib/file.txt")
		for range n {
			fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			syscall.Close(fd)
		}
	})
	for i, s := range sides {
		b.ReportMetric(float64(medians[i].Nanoseconds())/n/1000, s.name+"-us")
	}
}
