package gitmeta

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm"
)

// Config reads and writes git's keys: sections and names without case,
// subsections exactly; Set keeps a key where it was; a bad key is refused.
func TestConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta.git")
	r, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	err = r.UpdateConfig(ctx, func(c *Config) error {
		return errors.Join(c.Set("remote.origin.url", "/a"), c.Set("remote.origin.fetch", "+refs/heads/main:refs/remotes/origin/main"),
			c.Add("cache.pin", "a/b/c"), c.Add("cache.pin", "d/e/f"), c.Add("cache.pin", "g/h/i"))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.UpdateConfig(ctx, func(c *Config) error {
		return errors.Join(c.Set("REMOTE.origin.URL", "/b"), c.Unset("cache.pin", func(v string) bool { return v == "d/e/f" }))
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.ReadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("remote.origin.url"); v != "/b" {
		t.Errorf("remote.origin.url = %q, want /b", v)
	}
	if v, _ := c.Get("remote.Origin.url"); v != "" {
		t.Errorf("a subsection matched without its case: %q", v)
	}
	if pins, _ := c.GetAll("cache.pin"); strings.Join(pins, " ") != "a/b/c g/h/i" {
		t.Errorf("cache.pin = %q", pins)
	}
	if got := c.Subsections("remote"); len(got) != 1 || got[0] != "origin" {
		t.Errorf("remotes %q", got)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "config"))
	if u, f := strings.Index(string(b), "url = /b"), strings.Index(string(b), "fetch ="); u < 0 || f < 0 || u > f {
		t.Errorf("Set moved the key it changed:\n%s", b)
	}
	for _, bad := range []string{"nodot", ".name", "section."} {
		if _, err := c.Get(bad); !errors.Is(err, opm.ErrInvalid) {
			t.Errorf("Get(%q): %v, want an invalid key", bad, err)
		}
	}
}
