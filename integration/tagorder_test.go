package integration

import (
	"strings"
	"testing"
	"time"
)

// TestLsTagOrder: opm ls lists a repository's tags in version order (v1.9
// before v1.10), --sort name in string order, --sort date oldest first; an
// unknown order is a usage error of one line; the order holds in a
// selector's listing too, per repository.
func TestLsTagOrder(t *testing.T) {
	home := t.TempDir()
	src := pkgDir(t, 90, 1, 100)
	for _, tag := range []string{"v1.10", "latest", "v1.9", "v2.0.0-rc1"} {
		// Commit times count seconds: each push in a second of its own,
		// so that --sort date has one answer (ties: TestSortSummariesTies).
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		mustOpm(t, home, "push", "acme/web/site:"+tag, src)
	}
	mustOpm(t, home, "push", "acme/web/zzz:v1.10", src)
	mustOpm(t, home, "push", "acme/web/zzz:v1.9", src)
	first := func(out string) string {
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			names = append(names, strings.Fields(line)[0])
		}
		return strings.Join(names, " ")
	}
	for _, c := range []struct{ args, want string }{
		{"ls acme/web/site", "v1.9 v1.10 v2.0.0-rc1 latest"},
		{"ls acme/web/site --sort name", "latest v1.10 v1.9 v2.0.0-rc1"},
		{"ls acme/web/site --sort date", "v1.10 latest v1.9 v2.0.0-rc1"},
		{"ls acme/web --tags", "acme/web/site:v1.9 acme/web/site:v1.10 acme/web/site:v2.0.0-rc1 acme/web/site:latest acme/web/zzz:v1.9 acme/web/zzz:v1.10"},
	} {
		if got := first(mustOpm(t, home, strings.Fields(c.args)...).stdout); got != c.want {
			t.Errorf("opm %s: %q, want %q", c.args, got, c.want)
		}
	}
	r := syncOpm(t, home, "ls", "acme/web/site", "--sort", "size")
	wantCode(t, r, 2, `unknown tag order "size": want version, name or date`)
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("--sort size: more than one line:\n%s", r.stderr)
	}
}
