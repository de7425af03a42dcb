package opm

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Reference names a package: namespace/project/repository plus a tag or a
// digest (exactly one of them).
//
//	cncf/kubernetes/kube-apiserver:v1.30.0
//	cncf/kubernetes/kube-apiserver@sha256:<64 hex>
type Reference struct {
	Repository Repository
	Tag        string
	Digest     digest.Digest
}

// Repository is the three-part path namespace/project/repository.
type Repository struct {
	Namespace, Project, Name string
}

// Path is "ns/project/repo", the repository's directory in the metadata tree.
func (r Repository) Path() string { return r.Namespace + "/" + r.Project + "/" + r.Name }

func (r Repository) String() string { return r.Path() }

func (r Reference) String() string {
	if r.Digest != "" {
		return r.Repository.Path() + "@" + r.Digest.String()
	}
	return r.Repository.Path() + ":" + r.Tag
}

// MarshalText makes a reference in JSON its string, ns/project/repo:tag or
// ns/project/repo@sha256:<hex> (docs/json.md); the zero Reference is "".
func (r Reference) MarshalText() ([]byte, error) {
	switch {
	case r == (Reference{}):
		return []byte{}, nil
	case r.Tag == "" && r.Digest == "":
		return r.Repository.MarshalText()
	}
	return []byte(r.String()), nil
}

// UnmarshalText parses what MarshalText writes.
func (r *Reference) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = Reference{}
		return nil
	}
	if !strings.ContainsAny(string(b), ":@") {
		repo, err := ParseRepository(string(b))
		*r = Reference{Repository: repo}
		return err
	}
	ref, err := ParseReference(string(b))
	if err != nil {
		return err
	}
	*r = ref
	return nil
}

// MarshalText makes a repository in JSON its path, ns/project/repo; the
// zero Repository is "".
func (r Repository) MarshalText() ([]byte, error) {
	if r == (Repository{}) {
		return []byte{}, nil
	}
	return []byte(r.Path()), nil
}

// UnmarshalText parses what MarshalText writes.
func (r *Repository) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = Repository{}
		return nil
	}
	repo, err := ParseRepository(string(b))
	if err != nil {
		return err
	}
	*r = repo
	return nil
}

// The rules of docs/design.md §1, in the words used by error messages
// (TagRule for other packages' refusals of a tag).
const (
	componentRule = "must be 1 to 64 lower-case letters or digits, with single '.', '_' or '-' between them"
	TagRule       = "must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
	digestRule    = "must be sha256: followed by 64 lower-case hex digits"
)

// ValidComponent reports whether s is a valid namespace, project or
// repository name: [a-z0-9]+([._-][a-z0-9]+)*, 1 to 64 characters.
func ValidComponent(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	prevSep := true // a separator may not start the name
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			prevSep = false
		case c == '.', c == '_', c == '-':
			if prevSep {
				return false
			}
			prevSep = true
		default:
			return false
		}
	}
	return !prevSep
}

// ValidTag reports whether s matches the OCI tag grammar
// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
func ValidTag(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ParseDigest accepts only sha256 digests in canonical lower-case form.
func ParseDigest(s string) (digest.Digest, error) {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return "", Errorf(ErrInvalid, "digest %q %s", s, digestRule)
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", Errorf(ErrInvalid, "digest %q %s", s, digestRule)
		}
	}
	return digest.Digest(s), nil
}

var partNames = [3]string{"namespace", "project", "repository"}

// ParseRepository parses "ns/project/repo".
func ParseRepository(s string) (Repository, error) {
	r, why := parseRepository(s)
	if why != "" {
		return Repository{}, Errorf(ErrInvalid, "repository %q: %s", s, why)
	}
	return r, nil
}

// parseRepository parses "ns/project/repo", or says why it is not one.
func parseRepository(s string) (Repository, string) {
	if strings.HasSuffix(s, "/") {
		return Repository{}, "ends with '/'"
	}
	parts, why := parsePrefix(s)
	if why != "" {
		return Repository{}, why
	}
	if len(parts) != 3 {
		return Repository{}, fmt.Sprintf("want namespace/project/repository (3 parts, got %d)", len(parts))
	}
	return Repository{parts[0], parts[1], parts[2]}, ""
}

// ParsePrefix parses a listing prefix: "", "ns", "ns/project" or
// "ns/project/repo", each part checked. A trailing slash is allowed.
func ParsePrefix(s string) ([]string, error) {
	parts, why := parsePrefix(s)
	if why != "" {
		return nil, Errorf(ErrInvalid, "%q: %s", s, why)
	}
	return parts, nil
}

// parsePrefix parses a listing prefix, or says why it is not one.
func parsePrefix(s string) ([]string, string) {
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return nil, ""
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 {
		return nil, "a path has at most 3 parts, namespace/project/repository"
	}
	for i, p := range parts {
		if !ValidComponent(p) {
			return nil, fmt.Sprintf("%s %q %s", partNames[i], p, componentRule)
		}
	}
	return parts, ""
}

// ParseReference parses "ns/project/repo:tag" or "ns/project/repo@sha256:…".
func ParseReference(s string) (Reference, error) {
	var ref Reference
	repo, rest, isDigest := strings.Cut(s, "@")
	if !isDigest {
		var ok bool
		if repo, rest, ok = strings.Cut(s, ":"); !ok {
			return ref, Errorf(ErrInvalid, "reference %q: want namespace/project/repository:tag or …@sha256:<hex>", s)
		}
	}
	r, why := parseRepository(repo)
	if why != "" {
		return ref, Errorf(ErrInvalid, "reference %q: %s", s, why)
	}
	ref.Repository = r
	if isDigest {
		d, err := ParseDigest(rest)
		if err != nil {
			return ref, fmt.Errorf("reference %q: %w", s, err)
		}
		ref.Digest = d
		return ref, nil
	}
	if !ValidTag(rest) {
		return ref, Errorf(ErrInvalid, "reference %q: tag %q %s", s, rest, TagRule)
	}
	ref.Tag = rest
	return ref, nil
}

// ParseTagReference parses a reference that must carry a tag (push, tag, rm).
func ParseTagReference(s string) (Reference, error) {
	ref, err := ParseReference(s)
	if err == nil && ref.Tag == "" {
		err = Errorf(ErrInvalid, "reference %q: needs a :tag here, not a digest", s)
	}
	return ref, err
}
