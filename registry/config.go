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
	"context"
	"os"
	"strings"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// Config reads one key of the home's git config ("" when unset).
func (r *Registry) Config(key string) (string, error) {
	cfg, err := r.meta.ReadConfig()
	if err != nil {
		return "", fsError(err)
	}
	return cfg.Get(key)
}

// SetConfig writes one key of the home's git config ("" value unsets it).
func (r *Registry) SetConfig(ctx context.Context, key, value string) error {
	if strings.EqualFold(key, SigningKeyKey) {
		if value != "" {
			// The key must sign now, with the agent of whoever asks.
			if _, err := gitmeta.SigningKey(value, envOf(ctx)).SignCommit([]byte("opm: a signing test")); err != nil {
				return err
			}
		}
		return r.meta.UpdateConfig(ctx, func(cfg *gitmeta.Config) error {
			if value != "" {
				if err := cfg.Set("gpg.format", "ssh"); err != nil {
					return err
				}
			}
			return cfg.Set("user.signingkey", value)
		})
	}
	if err := checkConfig(ctx, key, value); err != nil {
		return err
	}
	return r.meta.UpdateConfig(ctx, func(cfg *gitmeta.Config) error { return cfg.Set(key, value) })
}

// updateConfig changes the home's git config under git's lock (see
// gitmeta.Repo.UpdateConfig).
func (r *Registry) updateConfig(fn func(*gitmeta.Config) error) error {
	return r.meta.UpdateConfig(context.Background(), fn)
}

type authorEnvKey struct{}

// envOf is the environment of whoever ctx acts for (WithAuthorEnv), else
// this process's.
func envOf(ctx context.Context) func(string) string {
	if getenv, ok := ctx.Value(authorEnvKey{}).(func(string) string); ok {
		return getenv
	}
	return os.Getenv
}

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
	getenv := envOf(ctx)
	// The home's config, read once for every key below.
	get := func(string) (string, error) { return "", nil }
	if cfg, err := r.meta.ReadConfig(); err == nil {
		get = cfg.Get
	}
	name, email := getenv("GIT_AUTHOR_NAME"), getenv("GIT_AUTHOR_EMAIL")
	if name == "" {
		name, _ = get("user.name")
	}
	if email == "" {
		email, _ = get("user.email")
	}
	if name == "" || email == "" {
		gname, gemail := gitmeta.GlobalUser()
		if name == "" {
			name = gname
		}
		if email == "" {
			email = gemail
		}
	}
	if name == "" {
		name = "opm"
	}
	if email == "" {
		host, _ := os.Hostname()
		email = "opm@" + host
	}
	sig := gitmeta.Signature{Name: name, Email: email, When: r.now()}
	// Signed commits: git's own settings, with an SSH key (gpg.format=ssh;
	// an OpenPGP key is git's, not opm's to use).
	if key, _ := get("user.signingkey"); key != "" {
		if format, _ := get("gpg.format"); strings.EqualFold(format, "ssh") {
			sig.Signer = gitmeta.SigningKey(key, getenv)
		}
	}
	sig.MaySign = func(s *gitmeta.Snapshot, changes []gitmeta.Change) error { return maySign(s, sig, changes) }
	return sig
}

// SigningKeyKey is opm config's name for the signing key: setting it sets
// git's user.signingkey and gpg.format=ssh, after checking the key loads.
const SigningKeyKey = "signing-key"

// checkConfig refuses a bad value of a key with rules before it is written.
func checkConfig(ctx context.Context, key, value string) error {
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
	if k := strings.ToLower(key); k == "opm.blobs" || strings.HasPrefix(k, "remote.") && strings.HasSuffix(k, ".blobs") {
		// A bucket that cannot be opened would stop every command of the
		// home, opm config among them.
		b, err := cas.OpenBucket(ctx, value)
		if err != nil {
			return opm.Errorf(opm.ErrInvalid, "%s: %w", key, err) // err names the bucket
		}
		b.Close()
	}
	return nil
}
