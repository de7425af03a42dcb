package registry

// The home's settings are git configuration of meta.git (docs/design.md §5):
//
//	[opm]
//		blobs = s3://bucket?region=eu-west-1   # the registry's bucket (else origin's)
//	[user]
//		name = …                               # the author of this home's commits
//		email = …
//	[cache]
//		quota = 20GiB                          # see quota.go
//		pin = acme/web/site:v1.*               # see pins.go
//	[transfer]
//		jobs = 16                              # blobs moved at once, see transfer.go
//	[remote "origin"]                          # see remotes.go
//		url = …
//		blobs = …

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/config"
	formatcfg "github.com/go-git/go-git/v5/plumbing/format/config"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

func (r *Registry) configFile() string { return filepath.Join(r.metaDir(), "config") }

func (r *Registry) readConfig() (*formatcfg.Config, error) {
	f, err := os.Open(r.configFile())
	if err != nil {
		return nil, fsError(err)
	}
	defer f.Close()
	return r.decodeConfig(f)
}

// decodeConfig reads the home's git config from rd.
func (r *Registry) decodeConfig(rd io.Reader) (*formatcfg.Config, error) {
	cfg := formatcfg.New()
	if err := formatcfg.NewDecoder(rd).Decode(cfg); err != nil {
		return nil, opm.Errorf(opm.ErrInvalid, "%s: %w", r.configFile(), err)
	}
	return cfg, nil
}

// splitKey splits "section.key" or "section.sub.key".
func splitKey(key string) (section, sub, name string, err error) {
	first := -1
	last := -1
	for i := 0; i < len(key); i++ {
		if key[i] == '.' {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first <= 0 || last == len(key)-1 {
		return "", "", "", opm.Errorf(opm.ErrInvalid, "config key %q: want section.name (e.g. opm.blobs)", key)
	}
	section, name = key[:first], key[last+1:]
	if last > first {
		sub = key[first+1 : last]
	}
	return section, sub, name, nil
}

// Config reads one key of the home's git config ("" when unset).
func (r *Registry) Config(key string) (string, error) {
	section, sub, name, err := splitKey(key)
	if err != nil {
		return "", err
	}
	cfg, err := r.readConfig()
	if err != nil {
		return "", err
	}
	s := cfg.Section(section)
	if sub != "" {
		return s.Subsection(sub).Option(name), nil
	}
	return s.Option(name), nil
}

// SetConfig writes one key of the home's git config ("" value unsets it).
func (r *Registry) SetConfig(key, value string) error {
	section, sub, name, err := splitKey(key)
	if err != nil {
		return err
	}
	if err := checkConfig(key, value); err != nil {
		return err
	}
	return r.updateConfig(func(cfg *formatcfg.Config) error {
		s := cfg.Section(section)
		switch {
		case sub != "" && value == "":
			s.Subsection(sub).RemoveOption(name)
		case sub != "":
			s.Subsection(sub).SetOption(name, value)
		case value == "":
			s.RemoveOption(name)
		default:
			s.SetOption(name, value)
		}
		return nil
	})
}

// updateConfig changes the home's git config under git's lock (config.lock):
// concurrent writers, opm or the git CLI, lose no change, and a crash
// leaves the old file or the new one.
func (r *Registry) updateConfig(fn func(*formatcfg.Config) error) error {
	return gitmeta.UpdateFile(context.Background(), r.configFile(), func(old []byte) ([]byte, error) {
		cfg, err := r.decodeConfig(bytes.NewReader(old))
		if err != nil {
			return nil, err
		}
		if err := fn(cfg); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := formatcfg.NewEncoder(&buf).Encode(cfg); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	})
}

type authorEnvKey struct{}

// WithAuthorEnv returns a context whose commits take their author from
// getenv instead of the process's environment: the daemon runs each
// client's command with the client's $GIT_AUTHOR_NAME and $GIT_AUTHOR_EMAIL.
func WithAuthorEnv(ctx context.Context, getenv func(string) string) context.Context {
	return context.WithValue(ctx, authorEnvKey{}, getenv)
}

// Author is who commits: $GIT_AUTHOR_NAME/$GIT_AUTHOR_EMAIL (of the
// environment WithAuthorEnv gave ctx, else of the process), else user.name
// and user.email of the home's config, else of the global git config, else
// "opm" at the host name.
func (r *Registry) Author(ctx context.Context) gitmeta.Signature {
	getenv, ok := ctx.Value(authorEnvKey{}).(func(string) string)
	if !ok {
		getenv = os.Getenv
	}
	name, email := getenv("GIT_AUTHOR_NAME"), getenv("GIT_AUTHOR_EMAIL")
	if name == "" {
		name, _ = r.Config("user.name")
	}
	if email == "" {
		email, _ = r.Config("user.email")
	}
	if name == "" || email == "" {
		if g, err := config.LoadConfig(config.GlobalScope); err == nil {
			if name == "" {
				name = g.User.Name
			}
			if email == "" {
				email = g.User.Email
			}
		}
	}
	if name == "" {
		name = "opm"
	}
	if email == "" {
		host, _ := os.Hostname()
		email = "opm@" + host
	}
	return gitmeta.Signature{Name: name, Email: email, When: r.now()}
}

// checkConfig refuses a bad value of a key with rules before it is written.
func checkConfig(key, value string) error {
	if value == "" {
		return nil
	}
	switch strings.ToLower(key) { // git config keys ignore case
	case QuotaKey:
		_, _, err := ParseQuota(value)
		return err
	case PinKey:
		_, err := layout.ParseSelector(value)
		return err
	case TransferJobsKey:
		_, err := ParseTransferJobs(value)
		return err
	}
	return nil
}
