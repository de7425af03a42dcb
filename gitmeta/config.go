package gitmeta

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/config"
	formatcfg "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/openpm/opm"
)

// Config is a repository's git configuration (its config file) as read at
// one moment. Keys are git's: "section.name" or "section.sub.name"; names
// and sections ignore case, subsections do not.
type Config struct {
	c    *formatcfg.Config
	file string
}

func (r *Repo) configFile() string { return filepath.Join(r.path, "config") }

// ReadConfig reads the repository's git config.
func (r *Repo) ReadConfig() (*Config, error) {
	b, err := os.ReadFile(r.configFile())
	if err != nil {
		return nil, err
	}
	return decodeConfig(r.configFile(), b)
}

// UpdateConfig changes the repository's git config under git's lock
// (config.lock, UpdateFile): concurrent writers, opm or the git CLI, lose
// no change, and a crash leaves the old file or the new one. An error of fn
// writes nothing.
func (r *Repo) UpdateConfig(ctx context.Context, fn func(*Config) error) error {
	return UpdateFile(ctx, r.configFile(), func(old []byte) ([]byte, error) {
		c, err := decodeConfig(r.configFile(), old)
		if err != nil {
			return nil, err
		}
		if err := fn(c); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := formatcfg.NewEncoder(&buf).Encode(c.c); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	})
}

func decodeConfig(file string, b []byte) (*Config, error) {
	c := formatcfg.New()
	if err := formatcfg.NewDecoder(bytes.NewReader(b)).Decode(c); err != nil {
		return nil, opm.Errorf(opm.ErrInvalid, "%s: %w", file, err)
	}
	return &Config{c: c, file: file}, nil
}

// options finds the options a key names (those of its section or
// subsection), and the option's name.
func (c *Config) options(key string) (*formatcfg.Options, string, error) {
	first, last := strings.IndexByte(key, '.'), strings.LastIndexByte(key, '.')
	if first <= 0 || last == len(key)-1 {
		return nil, "", opm.Errorf(opm.ErrInvalid, "config key %q: want section.name (e.g. opm.blobs)", key)
	}
	s := c.c.Section(key[:first])
	if last > first {
		return &s.Subsection(key[first+1 : last]).Options, key[last+1:], nil
	}
	return &s.Options, key[last+1:], nil
}

// Get is the value of key, the last one if it has several ("" when unset).
func (c *Config) Get(key string) (string, error) {
	o, name, err := c.options(key)
	if err != nil {
		return "", err
	}
	return o.Get(name), nil
}

// GetAll is every value of key, in file order.
func (c *Config) GetAll(key string) ([]string, error) {
	o, name, err := c.options(key)
	if err != nil {
		return nil, err
	}
	return o.GetAll(name), nil
}

// Set gives key the one value value; "" unsets it.
func (c *Config) Set(key, value string) error {
	if err := c.Unset(key, nil); err != nil || value == "" {
		return err
	}
	return c.Add(key, value)
}

// Add gives key one more value.
func (c *Config) Add(key, value string) error {
	o, name, err := c.options(key)
	if err != nil {
		return err
	}
	*o = append(*o, &formatcfg.Option{Key: name, Value: value})
	return nil
}

// Unset removes the values of key for which match is true (every value
// when match is nil).
func (c *Config) Unset(key string, match func(value string) bool) error {
	o, name, err := c.options(key)
	if err != nil {
		return err
	}
	*o = slices.DeleteFunc(*o, func(opt *formatcfg.Option) bool {
		return opt.IsKey(name) && (match == nil || match(opt.Value))
	})
	return nil
}

// Subsections lists the subsections of section, in file order ("remote"
// gives the names of the remotes).
func (c *Config) Subsections(section string) []string {
	var out []string
	for _, s := range c.c.Section(section).Subsections {
		out = append(out, s.Name)
	}
	return out
}

// HasSubsection reports whether section has the subsection sub.
func (c *Config) HasSubsection(section, sub string) bool {
	return c.c.Section(section).HasSubsection(sub)
}

// RemoveSubsection removes the subsection sub of section and its keys.
func (c *Config) RemoveSubsection(section, sub string) { c.c.RemoveSubsection(section, sub) }

// GlobalUser is user.name and user.email of the user's global git config
// (empty where unset or unreadable).
func GlobalUser() (name, email string) {
	g, err := config.LoadConfig(config.GlobalScope)
	if err != nil {
		return "", ""
	}
	return g.User.Name, g.User.Email
}

// CheckURL refuses a location git cannot fetch from or push to.
func CheckURL(u string) error {
	_, err := transport.NewEndpoint(u)
	return err
}
