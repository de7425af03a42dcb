package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openpm/opm/internal/opmtest"
)

// TestRealPrograms: the programs people point at a mount work from it as
// from the tree on disk — a pushed binary runs and loads its shared library
// (mapped from the mount), python finds its byte-compiled caches fresh, make
// tells an up-to-date tree from a stale one, rsync -a sees a pulled copy
// as the same, and tar keeps the times. Each depends on the files' own
// modification times, which the mount once replaced by the tag's.
func TestRealPrograms(t *testing.T) {
	opmtest.RequireFUSE(t)
	for _, prog := range []string{"gcc", "make", "python3", "rsync", "tar"} {
		if _, err := exec.LookPath(prog); err != nil {
			opmtest.Unavailable(t, "%s is not installed (make deps installs it)", prog)
		}
	}
	home := t.TempDir()
	src := t.TempDir()
	run := func(t *testing.T, dir, script string) string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	// A program and the shared library it loads from beside it.
	run(t, src, `mkdir -p bin lib py/pkg build stale
cat > greet.c <<'EOF'
#include <stdio.h>
void greet(void) { printf("hello from the library\n"); }
EOF
cat > main.c <<'EOF'
void greet(void);
int main(void) { greet(); return 0; }
EOF
gcc -shared -fPIC -o lib/libgreet.so greet.c
gcc -o bin/hello main.c -Llib -lgreet -Wl,-rpath,'$ORIGIN/../lib'
rm greet.c main.c
# A python package, byte-compiled.
printf 'def answer():\n    return 42\n' > py/pkg/mod.py
touch py/pkg/__init__.py
python3 -m compileall -q py
# A make target built from its source, and one whose source changed after.
printf 'out.txt: in.txt\n\tcp in.txt out.txt\n' > build/Makefile
cp build/Makefile stale/Makefile
for d in build stale; do echo v1 > $d/in.txt; echo v1 > $d/out.txt; done
touch -d '2026-01-01 10:00' build/in.txt stale/out.txt
touch -d '2026-01-01 11:00' build/out.txt stale/in.txt`)
	mustOpm(t, home, "push", "acme/tools/kit:v1", src)
	// The tag is set later than every file: a mount that showed the tag's
	// time would show none of these times.
	time.Sleep(1100 * time.Millisecond)
	mustOpm(t, home, "tag", "acme/tools/kit:v1", "acme/tools/kit:later")
	pulled := filepath.Join(t.TempDir(), "pulled")
	mustOpm(t, home, "pull", "acme/tools/kit:later", "-o", pulled)
	// Through the kernel's overlay (the default, where it can be) and
	// through FUSE alone.
	for _, c := range []struct {
		path string
		env  []string
	}{{"overlay", nil}, {"fuse", []string{"OPM_OVERLAY=0"}}} {
		t.Run(c.path, func(t *testing.T) {
			mnt := mountDaemon(t, home, c.env...)
			pkg := filepath.Join(mnt, "acme/tools/kit/later")
			opmtest.RequireReadPath(t, mnt, pkg, c.path)

			if out := run(t, pkg, "./bin/hello"); out != "hello from the library\n" {
				t.Errorf("the pushed program printed %q", out)
			}
			// Fresh caches: python imports without compiling (it could not write
			// to the mount anyway), and compileall finds nothing to do.
			if out := run(t, pkg, "python3 -B -c 'import sys; sys.path.insert(0, \"py\"); import pkg.mod; print(pkg.mod.answer(), pkg.mod.__cached__)'"); !strings.HasPrefix(out, "42 ") {
				t.Errorf("python: %q", out)
			}
			if out := run(t, pkg, "python3 -m compileall py"); strings.Contains(out, "Compiling") {
				t.Errorf("compileall recompiles from the mount:\n%s", out)
			}
			// make: the built tree is up to date, the stale one is not.
			run(t, pkg, "make -q -C build")
			if err := exec.Command("make", "-q", "-C", filepath.Join(pkg, "stale")).Run(); err == nil {
				t.Error("make -q finds the stale tree up to date: the mount hides which file is newer")
			}
			// rsync sees a pulled copy as the same tree; tar keeps the times.
			if out := run(t, pkg, "rsync -a --dry-run --itemize-changes ./ "+pulled+"/"); strings.TrimSpace(out) != "" {
				t.Errorf("rsync -a from the mount to a pulled copy would change:\n%s", out)
			}
			if out := run(t, pkg, "tar -cf - build/in.txt | tar -tvf - --full-time"); !strings.Contains(out, "2026-01-01 10:00:00") {
				t.Errorf("tar of the mount: %q, want the file's own time", out)
			}
		})
	}
}
