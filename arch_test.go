package opm_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowed are the arrows of docs/design.md §8: for each package of opm,
// the packages of opm it may import. A package missing here fails the test:
// a new package takes its place in the design first.
var allowed = map[string][]string{
	"":               nil, // the domain model
	"internal/erofs": nil,
	"internal/flock": nil,
	"layout":         {""},
	"gitmeta":        {"", "internal/flock"},
	"cas":            {"", "internal/flock"},
	"registry":       {"", "layout", "gitmeta", "cas", "internal/flock"},
	"fs":             {"", "registry", "layout", "internal/erofs"},
	"server":         {"", "registry", "layout"},
	"sync":           {"", "registry", "layout"},
	"daemon":         {"", "registry", "internal/flock"},
	"cmd/opm":        {"", "registry", "layout", "fs", "server", "sync", "daemon"},
}

// testOnly are the packages of tests and tools: they may import anything,
// and no package of allowed imports them.
var testOnly = []string{"integration", "bench", "internal/opmtest", "internal/faultproxy", "internal/cmd/testsum", "cas/castest"}

// outside are the libraries only one package may import: git is gitmeta's,
// Badger is cas's.
var outside = map[string]string{
	"github.com/go-git/":     "gitmeta",
	"github.com/dgraph-io/":  "cas",
	"github.com/hanwen/":     "fs",
	"github.com/urfave/cli/": "cmd/opm",
}

// TestPackageGraph holds the imports of every package of opm (tests aside)
// to the arrows of docs/design.md §8.
func TestPackageGraph(t *testing.T) {
	const module = "github.com/openpm/opm"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		may, known := allowed[pkg]
		tool := slices.Contains(testOnly, pkg)
		if !known && !tool {
			t.Errorf("package %q is not in docs/design.md §8's graph (nor in this test's allowed table)", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if dep, ok := strings.CutPrefix(imp, module); ok {
				dep = strings.TrimPrefix(dep, "/")
				if !tool && !slices.Contains(may, dep) {
					t.Errorf("%s imports %s: not an arrow of docs/design.md §8", show(pkg), show(dep))
				}
				continue
			}
			for prefix, owner := range outside {
				if strings.HasPrefix(imp, prefix) && pkg != owner && !tool {
					t.Errorf("%s imports %s, which is %s's alone", show(pkg), imp, owner)
				}
			}
		}
	}
}

func show(pkg string) string {
	if pkg == "" {
		return "opm (root)"
	}
	return pkg
}
