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

// splitKey splits "section.name" or "section.sub.name".
func splitKey(key string) (section, sub, name string, err error) {
	first, last := strings.IndexByte(key, '.'), strings.LastIndexByte(key, '.')
	if first <= 0 || last == len(key)-1 {
		return "", "", "", opm.Errorf(opm.ErrInvalid, "config key %q: want section.name (e.g. opm.blobs)", key)
	}
	if last > first {
		sub = key[first+1 : last]
	}
	return key[:first], sub, key[last+1:], nil
}

// options finds the options a key names (those of its section or
// subsection, made if missing), and the option's name.
func (c *Config) options(key string) (*formatcfg.Options, string, error) {
	section, sub, name, err := splitKey(key)
	if err != nil {
		return nil, "", err
	}
	s := c.c.Section(section)
	if sub != "" {
		return &s.Subsection(sub).Options, name, nil
	}
	return &s.Options, name, nil
}

// lookup finds the options a key names without making a missing section
// (nil then), and the option's name.
func (c *Config) lookup(key string) (formatcfg.Options, string, error) {
	section, sub, name, err := splitKey(key)
	if err != nil || !c.c.HasSection(section) {
		return nil, name, err
	}
	s := c.c.Section(section)
	if sub == "" {
		return s.Options, name, nil
	}
	if !s.HasSubsection(sub) {
		return nil, name, nil
	}
	return s.Subsection(sub).Options, name, nil
}

// Get is the value of key, the last one if it has several ("" when unset).
func (c *Config) Get(key string) (string, error) {
	o, name, err := c.lookup(key)
	return o.Get(name), err
}

// GetAll is every value of key, in file order.
func (c *Config) GetAll(key string) ([]string, error) {
	o, name, err := c.lookup(key)
	return o.GetAll(name), err
}

// Set gives key the one value value, where its first value was (or at the
// end of its section); "" unsets it.
func (c *Config) Set(key, value string) error {
	o, name, err := c.options(key)
	if err != nil || value == "" {
		if err == nil {
			err = c.Unset(key, nil)
		}
		return err
	}
	i := slices.IndexFunc(*o, func(opt *formatcfg.Option) bool { return opt.IsKey(name) })
	if i < 0 {
		return c.Add(key, value)
	}
	(*o)[i].Value = value
	*o = append((*o)[:i+1], slices.DeleteFunc((*o)[i+1:], func(opt *formatcfg.Option) bool { return opt.IsKey(name) })...)
	return nil
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
	if !c.c.HasSection(section) {
		return nil
	}
	var out []string
	for _, s := range c.c.Section(section).Subsections {
		out = append(out, s.Name)
	}
	return out
}

// HasSubsection reports whether section has the subsection sub.
func (c *Config) HasSubsection(section, sub string) bool {
	return c.c.HasSection(section) && c.c.Section(section).HasSubsection(sub)
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
