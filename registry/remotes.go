package registry

// Remotes: a remote is another registry this home exchanges packages with,
// its metadata in a git repository and its blobs in a bucket. They are git
// configuration of meta.git:
//
//	[remote "origin"]
//		url = https://git.example.org/opm-meta.git   (local path, file://, git://, http(s)://, ssh://)
//		blobs = s3://opm-blobs?region=eu-west-1      (file://, s3://, gs://, azblob://, mem://)
//		fetch = +refs/heads/main:refs/remotes/origin/main
//
// A home with an origin publishes to it (publish.go) and follows it
// (follow.go); opm sync SRC DST mirrors one remote into another (mirror.go).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/gitmeta"
)

// Origin is the remote a home publishes to and follows.
const Origin = "origin"

// Remote is a registry elsewhere: git metadata at URL, blobs in Blobs.
type Remote struct {
	Name  string `json:"name"`
	URL   string `json:"meta"`
	Blobs string `json:"blobs"`
	// Trust is the fingerprint of the key this home trusts to sign the
	// remote's metadata (trust.go); empty until pinned.
	Trust string `json:"trusted_key,omitempty"`
}

// blobsURL is the bucket of the home: opm.blobs, else origin's blobs.
func (r *Registry) blobsURL() (url, key string, err error) {
	for _, key := range []string{"opm.blobs", "remote." + Origin + ".blobs"} {
		url, err := r.Config(key)
		if err != nil || url != "" {
			return url, key, err
		}
	}
	return "", "", nil
}

// ValidateRemoteName refuses a remote name that is not a valid name part:
// it names directories of the home (mirrors/<name>.git,
// refs/remotes/<name>).
func ValidateRemoteName(name string) error {
	if !opm.ValidComponent(name) {
		return opm.Errorf(opm.ErrInvalid, "remote name %q: want lower-case letters and digits, separated by '.', '_' or '-'", name)
	}
	return nil
}

// normalizeMetaURL makes a local path absolute; URLs and scp-like
// addresses (user@host:path) are kept.
func normalizeMetaURL(u string) (string, error) {
	if u == "" {
		return "", opm.Errorf(opm.ErrInvalid, "empty metadata URL: give the git repository, opm remote add NAME --meta URL --blobs BUCKET")
	}
	if !IsLocalPath(u) {
		return u, nil
	}
	return filepath.Abs(u)
}

// IsLocalPath reports whether a metadata location is a local path rather
// than a URL (scheme://…) or an scp-like ssh address (user@host:path): it
// is one unless a ':' comes before any '/', and not first.
func IsLocalPath(u string) bool {
	i := strings.IndexAny(u, ":/")
	return i <= 0 || u[i] == '/'
}

// AddRemote records a remote. It fails with opm.ErrExists if the name is
// taken and opm.ErrInvalid if a URL cannot be used.
func (r *Registry) AddRemote(ctx context.Context, rm Remote) error {
	if err := ValidateRemoteName(rm.Name); err != nil {
		return err
	}
	var err error
	if rm.URL, err = normalizeMetaURL(rm.URL); err != nil {
		return err
	}
	if err := gitmeta.CheckURL(rm.URL); err != nil {
		return opm.Errorf(opm.ErrInvalid, "remote %s: metadata URL %q: %w", rm.Name, rm.URL, err)
	}
	if rm.Blobs == "" {
		return opm.Errorf(opm.ErrInvalid, "remote %s: a bucket URL is needed (--blobs)", rm.Name)
	}
	if rm.Trust != "" {
		if rm.Trust, err = gitmeta.KeyFingerprint(rm.Trust); err != nil {
			return opm.Errorf(opm.ErrInvalid, "remote %s: --trust: %w", rm.Name, err)
		}
	}
	// One request a read-only credential may make, so that a wrong
	// scheme, a missing bucket or bad credentials are said now.
	b, err := cas.OpenBucket(ctx, rm.Blobs)
	if err != nil {
		return fmt.Errorf("remote %s: %w", rm.Name, err)
	}
	err = b.Check(ctx)
	b.Close()
	if err != nil {
		return fmt.Errorf("remote %s: %w", rm.Name, err)
	}
	// And one round trip to the metadata: a URL that names no repository
	// is said now, not at the first sync.
	if err := gitmeta.CheckRemote(ctx, rm.URL); err != nil {
		return fmt.Errorf("remote %s: metadata %w", rm.Name, err)
	}
	return r.updateConfig(func(cfg *gitmeta.Config) error {
		if cfg.HasSubsection("remote", rm.Name) {
			return opm.Errorf(opm.ErrExists, "remote %s already exists (opm remote rm %s first)", rm.Name, rm.Name)
		}
		err := errors.Join(cfg.Set(remoteKey(rm.Name, "url"), rm.URL), cfg.Set(remoteKey(rm.Name, "blobs"), rm.Blobs),
			cfg.Set(remoteKey(rm.Name, "fetch"), "+refs/heads/main:"+string(gitmeta.TrackingRef(rm.Name))))
		if rm.Trust != "" {
			err = errors.Join(err, cfg.Set(remoteKey(rm.Name, "trust"), rm.Trust))
		}
		return err
	})
}

// Remotes lists the configured remotes in config order.
func (r *Registry) Remotes() ([]Remote, error) {
	cfg, err := r.meta.ReadConfig()
	if err != nil {
		return nil, fsError(err)
	}
	var out []Remote
	for _, name := range cfg.Subsections("remote") {
		out = append(out, remoteOf(cfg, name))
	}
	return out, nil
}

// Remote returns the remote called name, or an opm.ErrNotFound error.
func (r *Registry) Remote(name string) (Remote, error) {
	rm, ok, err := r.remote(name)
	if err != nil {
		return Remote{}, err
	}
	if !ok {
		return Remote{}, opm.Errorf(opm.ErrNotFound, "no remote %s (opm remote add %s --meta URL --blobs URL)", name, name)
	}
	if err := rm.complete(); err != nil {
		return Remote{}, err
	}
	return rm, nil
}

func (rm Remote) complete() error {
	if rm.URL == "" || rm.Blobs == "" {
		return opm.Errorf(opm.ErrInvalid, "remote %s: remote.%s.url and remote.%s.blobs must both be set (opm remote rm %s, then opm remote add %s --meta URL --blobs BUCKET)", rm.Name, rm.Name, rm.Name, rm.Name, rm.Name)
	}
	return nil
}

// remote reads the configuration of the remote called name, and whether
// there is one. A name that is not a valid one (it names a directory of the
// home: mirrors/<name>.git, refs/remotes/<name>) is refused even if a
// hand-edited config holds it.
func (r *Registry) remote(name string) (Remote, bool, error) {
	if err := ValidateRemoteName(name); err != nil {
		return Remote{}, false, err
	}
	cfg, err := r.meta.ReadConfig()
	if err != nil {
		return Remote{}, false, fsError(err)
	}
	if !cfg.HasSubsection("remote", name) {
		return Remote{}, false, nil
	}
	return remoteOf(cfg, name), true, nil
}

// remoteOf reads the remote called name of cfg.
func remoteOf(cfg *gitmeta.Config, name string) Remote {
	url, _ := cfg.Get(remoteKey(name, "url"))
	blobs, _ := cfg.Get(remoteKey(name, "blobs"))
	trust, _ := cfg.Get(remoteKey(name, "trust"))
	return Remote{Name: name, URL: url, Blobs: blobs, Trust: trust}
}

// remoteKey is the git config key of a setting of the remote called name.
func remoteKey(name, setting string) string { return "remote." + name + "." + setting }

// mirrorScratch is the scratch repository of `opm sync SRC DST` into the
// remote dst (<home>/mirrors/<dst>.git).
func (r *Registry) mirrorScratch(dst string) string {
	return r.Paths().Mirror(dst)
}

// RemoveRemote forgets a remote, its tracking ref and the scratch
// repository of mirrors into it.
func (r *Registry) RemoveRemote(name string) error {
	if err := ValidateRemoteName(name); err != nil {
		return err
	}
	err := r.updateConfig(func(cfg *gitmeta.Config) error {
		if !cfg.HasSubsection("remote", name) {
			return opm.Errorf(opm.ErrNotFound, "no remote %s (opm remote ls lists them)", name)
		}
		cfg.RemoveSubsection("remote", name)
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.meta.RemoveTracking(context.Background(), name); err != nil {
		return err
	}
	// Renamed aside first, in one step: a later mirror into a remote of the
	// same name starts afresh even if removing the files fails or a mirror
	// still running holds them (it fails; the destination keeps its blobs
	// first, metadata last order).
	scratch := r.mirrorScratch(name)
	aside := fmt.Sprintf("%s.removed-%d", scratch, time.Now().UnixNano())
	if err := os.Rename(scratch, aside); err == nil {
		err = os.RemoveAll(aside)
		if err != nil {
			slog.Warn("remote removed, but not its scratch repository", "dir", aside, "err", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		slog.Warn("remote removed, but not its scratch repository", "dir", scratch, "err", err)
	}
	return nil
}

// origin returns the home's origin, if it has one (a remote.origin.url).
func (r *Registry) origin() (Remote, bool, error) {
	rm, ok, err := r.remote(Origin)
	if err != nil || !ok || rm.URL == "" {
		return Remote{}, false, err
	}
	if err := rm.complete(); err != nil {
		return Remote{}, false, err
	}
	return rm, true, nil
}

// openBucket opens a remote's bucket: the home's own when it is the same
// (own is then false and the caller must not close it).
func (r *Registry) openBucket(ctx context.Context, rm Remote) (b *cas.Bucket, opened bool, err error) {
	url, _, err := r.blobsURL()
	if err != nil {
		return nil, false, err
	}
	if url == rm.Blobs && r.bucket != nil {
		return r.bucket, false, nil
	}
	b, err = cas.OpenBucket(ctx, rm.Blobs)
	if err != nil {
		return nil, false, fmt.Errorf("remote %s: %w", rm.Name, err)
	}
	return b, true, nil
}
